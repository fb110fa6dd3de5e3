"""Inputs from values, files, folders and streams."""

from __future__ import annotations

import io
import os
from pathlib import Path

from multiembed.sources import Item, as_items, read_lines, walk_files


def test_values_are_named_by_position_and_paths_by_themselves():
    items = list(as_items(["a", Path("b.txt"), Item("custom", "c")]))
    assert [(i.source, i.value) for i in items] == [
        ("#0", "a"),
        ("b.txt", Path("b.txt")),
        ("custom", "c"),
    ]


def test_walk_is_recursive_sorted_filtered_and_skips_hidden(tmp_path):
    for name in ["b.txt", "a.md", "c.jpg", ".hidden.txt", "sub/z.txt", "sub/a.TXT", ".git/x.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in walk_files(tmp_path, frozenset({".txt", ".md"}))]
    assert found == ["a.md", "b.txt", "sub/a.TXT", "sub/z.txt"]


def test_symlink_loops_are_visited_once(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("x")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    found = list(walk_files(tmp_path, frozenset({".txt"})))
    assert found == [tmp_path / "sub" / "a.txt"]


def test_lines_skip_blanks_and_keep_line_numbers():
    stream = io.BytesIO(b"first\n\n   \nsecond\r\n\xff\xfe\n")
    items = list(read_lines(stream, "in.txt"))
    assert [(i.source, i.value) for i in items] == [
        ("in.txt:1", "first"),
        ("in.txt:4", "second"),
        ("in.txt:5", b"\xff\xfe"),
    ]
