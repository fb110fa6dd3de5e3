"""Hostile --uri values and damaged Milvus Lite databases: one true error line, nothing created.

Each CLI case runs the real ``multiembed`` command in a subprocess against real Milvus Lite and
checks: exit code 2, exactly one stderr line ``multiembed: error: ...`` (so no traceback and no line
logged by pymilvus or Milvus Lite), and, where it matters, that nothing was created on disk.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import multiembed
from multiembed import BackendError
from multiembed.cli import main
from multiembed.milvus import MilvusStore, list_collections
from tests.tiny_models import tiny_sentence_transformer

DOCS = ["a red bicycle", "a brick wall", "the lazy dog", "milvus vector database"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """One tiny text model (conftest's tiny_models builds four: seconds this file does not need)."""
    folder = tiny_sentence_transformer(tmp_path_factory.mktemp("tiny"), "mean", pooling="mean")
    return multiembed.load("text", str(folder), device="cpu")


@dataclass
class Case:
    """One CLI run of the batch: its arguments, where it runs, and (once run) what it printed."""

    args: list[str]
    cwd: Path | None = None
    done: subprocess.CompletedProcess[str] | None = None

    def run(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        command = [sys.executable, "-m", "multiembed", *self.args]
        self.done = subprocess.run(
            command, capture_output=True, text=True, timeout=300, cwd=self.cwd, env=env
        )

    def error(self) -> str:
        """The single error line of the failed run (asserting there is nothing else on stderr)."""
        assert self.done is not None
        lines = self.done.stderr.splitlines()
        assert self.done.returncode == 2, self.done.stderr
        assert len(lines) == 1 and lines[0].startswith("multiembed: error: "), self.done.stderr
        assert "Traceback" not in self.done.stderr and self.done.stdout == ""
        return lines[0]


def tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def stored(uri: str, encoder, texts=DOCS) -> None:
    with MilvusStore(uri, "docs", encoder) as store:
        store.add(texts)


def corrupt_manifest(uri: str, how: str) -> None:
    """Damage the collection's manifest.json the way a crash or a full disk would."""
    (manifest,) = Path(uri).rglob("manifest.json")
    if how == "garbage":
        manifest.write_bytes(b"\x00\xffnot json at all")
    else:
        data = manifest.read_bytes()
        manifest.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, encoder) -> dict[str, Case]:
    """Every CLI case, set up here and run together: each run is a fresh interpreter (seconds of
    imports), so running them side by side keeps this file fast. Each test then reads its case.

    Read-only directories: as root, permissions do not stop writes; multiembed reads a directory
    with no write bit as read-only all the same (see client._not_writable), which is what keeps the
    read-only cases truthful under root too.
    """
    root = tmp_path_factory.mktemp("faults")
    folders = {name: root / name for name in ("suffix", "file", "dir", "ro", "typo")}
    for folder in folders.values():
        folder.mkdir()
    (root / "file" / "notes.db").write_text("not a database\n")
    (root / "dir" / "photos.db").mkdir()
    (root / "dir" / "photos.db" / "cat.jpg").write_bytes(b"\xff\xd8")
    (root / "docs.txt").write_text("a red bicycle\n")
    (root / "typo" / "multiembed.db").mkdir()  # the database the user meant; untouched
    for name in ("garbage", "truncated", "filter"):
        stored(str(root / name / "m.db"), encoder)
    corrupt_manifest(str(root / "garbage" / "m.db"), "garbage")
    corrupt_manifest(str(root / "truncated" / "m.db"), "truncated")
    cases = {
        "filter": Case(["search", "bike", "-c", "docs", "--uri", "m.db", "--filter", "source == (("]),
        "garbage": Case(["search", "a red bicycle", "-c", "docs", "--uri", "m.db"]),
        "truncated": Case(["collections", "--uri", "m.db"]),
        "held": Case(["collections", "--uri", str(root / "held.db")], root),
        "suffix": Case(["collections", "--uri", "vectors.sqlite"]),
        "file": Case(["search", "bike", "-c", "docs", "--uri", "notes.db"]),
        "dir": Case(["index", str(root / "docs.txt"), "-m", "text", "--uri", "photos.db"]),
        "ro": Case(["index", str(root / "docs.txt"), "-m", "text", "--uri", "new.db"]),
        "typo-search": Case(["search", "bike", "-c", "docs", "--uri", "sub/multiembd.db"], root / "typo"),
        "typo-collections": Case(["collections", "--uri", "sub/multiembd.db"], root / "typo"),
    }
    for name, case in cases.items():
        case.cwd = case.cwd or root / name
    (root / "ro").chmod(0o555)
    try:
        with MilvusStore(str(root / "held.db"), "docs", encoder) as store:  # held by this process
            store.add(DOCS[:1])
            workers = min(len(cases), os.cpu_count() or 1, 8)
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(Case.run, cases.values()))
    finally:
        (root / "ro").chmod(stat.S_IRWXU)
    return cases


# ---- opening Milvus Lite: messages that say what is true -------------------------------------


@pytest.mark.slow
def test_a_lite_path_must_end_in_db(runs):
    assert runs["suffix"].error() == (
        "multiembed: error: Milvus Lite needs a path ending in .db, got vectors.sqlite "
        "(or pass a server URL such as http://host:19530)"
    )
    assert tree(runs["suffix"].cwd) == []


@pytest.mark.slow
def test_a_file_is_not_a_lite_database(runs):
    assert "notes.db is not a Milvus Lite database: it is a file" in runs["file"].error()
    assert tree(runs["file"].cwd) == ["notes.db"]


@pytest.mark.slow
def test_a_directory_without_the_lite_layout_is_not_a_lite_database(runs):
    line = runs["dir"].error()
    assert "photos.db is not a Milvus Lite database: the directory has no collections/ folder" in line
    assert tree(runs["dir"].cwd) == ["photos.db", "photos.db/cat.jpg"]


@pytest.mark.slow
def test_a_new_database_in_a_read_only_location(runs):
    line = runs["ro"].error()
    assert "cannot create a Milvus Lite database at new.db: read-only location: no write permission" in line
    assert f"no write permission on {runs['ro'].cwd}" in line  # the folder that refused, named
    assert tree(runs["ro"].cwd) == []


def test_an_existing_database_in_a_read_only_directory(tmp_path, encoder):
    uri = str(tmp_path / "m.db")
    stored(uri, encoder)
    Path(uri).chmod(0o555)  # see `runs` on read-only directories and root
    try:
        with pytest.raises(BackendError) as refused:
            MilvusStore(uri, "docs")
    finally:
        Path(uri).chmod(stat.S_IRWXU)
    message = f"cannot open Milvus Lite database {uri}: read-only location: no write permission on {uri}"
    assert str(refused.value).startswith(message)


# ---- read-only commands create nothing -----------------------------------------------------------


@pytest.mark.parametrize("case", ["typo-search", "typo-collections"])
@pytest.mark.slow
def test_read_only_commands_create_nothing_for_a_mistyped_uri(runs, case):
    assert runs[case].error() == "multiembed: error: no Milvus Lite database at sub/multiembd.db"
    assert tree(runs[case].cwd) == ["multiembed.db"]


def test_opening_without_an_encoder_creates_nothing(tmp_path):
    uri = str(tmp_path / "missing" / "typo.db")
    with pytest.raises(BackendError, match=f"^no Milvus Lite database at {re.escape(uri)}$"):
        MilvusStore(uri, "docs")
    with pytest.raises(BackendError, match=f"^no Milvus Lite database at {re.escape(uri)}$"):
        list_collections(uri)
    assert tree(tmp_path) == []


# ---- a damaged collection is not answered from silently --------------------------------------


@pytest.mark.parametrize("case", ["garbage", "truncated"])
@pytest.mark.slow
def test_a_damaged_manifest_is_reported_not_answered_from(runs, case):
    line = runs[case].error()
    assert (
        f"multiembed: error: collection 'docs' looks damaged: Milvus reports 0 rows, multiembed last "
        f"stored {len(DOCS)}; re-run `multiembed index`"
    ) in line
    assert "accept_row_count=True" in line


def test_indexing_again_repairs_a_damaged_collection(tmp_path, encoder, capsys):
    uri = str(tmp_path / "m.db")
    stored(uri, encoder)
    corrupt_manifest(uri, "garbage")
    with pytest.raises(BackendError, match="looks damaged: Milvus reports 0 rows, multiembed last stored 4"):
        MilvusStore(uri, "docs")
    (summary,) = list_collections(uri)  # listed, with why it looks damaged
    assert summary.rows == 0 and "looks damaged: Milvus reports 0 rows" in str(summary.damage)

    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS) + "\n")
    assert main(["index", str(docs), "-c", "docs", "--uri", uri, "-q"]) == 0
    err = capsys.readouterr().err
    assert "multiembed: warning: collection 'docs' looks damaged: Milvus reports 0 rows" in err
    assert f"added {len(DOCS)}, skipped 0" in err
    with MilvusStore(uri, "docs") as store:
        assert store.count() == len(DOCS) and store.row_shortfall is None
        assert store.search("a red bicycle", limit=1)[0].source.endswith("docs.txt:1")


def test_indexing_other_files_does_not_hide_the_damage(tmp_path, encoder, capsys):
    uri = str(tmp_path / "m.db")
    stored(uri, encoder)
    corrupt_manifest(uri, "garbage")
    other = tmp_path / "other.txt"
    other.write_text("an unrelated sentence\n")
    assert main(["index", str(other), "-c", "docs", "--uri", uri, "-q"]) == 0
    err = capsys.readouterr().err
    assert "collection 'docs' still holds 1 of the 4 rows multiembed stored" in err
    with pytest.raises(BackendError, match="Milvus reports 1 rows, multiembed last stored 4"):
        MilvusStore(uri, "docs")


def test_rows_deleted_on_purpose_can_be_accepted(tmp_path, encoder):
    uri = str(tmp_path / "m.db")
    stored(uri, encoder)
    with MilvusStore(uri, "docs") as store:
        store.client.raw.delete("docs", filter='source == "#0"')
    with pytest.raises(BackendError, match="Milvus reports 3 rows, multiembed last stored 4"):
        MilvusStore(uri, "docs")
    with MilvusStore(uri, "docs", accept_row_count=True) as store:
        assert store.row_shortfall is not None and "reports 3 rows" in store.row_shortfall
    with MilvusStore(uri, "docs") as store:  # accepted once, fine from now on
        assert store.count() == 3 and store.row_shortfall is None
        store.add(["one more text"])
    assert [(summary.name, summary.rows) for summary in list_collections(uri)] == [("docs", 4)]


# ---- library loggers stay off the terminal -------------------------------------------------------


@pytest.mark.slow
def test_a_malformed_filter_prints_no_library_logs(runs):
    assert runs["filter"].error().startswith("multiembed: error: Milvus: ")


@pytest.mark.slow
def test_a_second_process_gets_one_true_line(runs):
    assert runs["held"].error() == (
        f"multiembed: error: cannot open Milvus Lite database {runs['held'].args[-1]}: another process "
        "is using it (Milvus Lite allows one process per database; close the other one or wait for it "
        "to finish)"
    )


def test_one_damaged_collection_does_not_hide_the_others(tmp_path, encoder, capsys):
    uri = str(tmp_path / "m.db")
    stored(uri, encoder)
    with MilvusStore(uri, "healthy", encoder) as store:
        store.add(DOCS[:2])
    (Path(uri) / "collections" / "docs" / "manifest.json").write_bytes(b"\x00\xffnot json at all")
    assert main(["collections", "--uri", uri]) == 2
    captured = capsys.readouterr()
    assert captured.out.split()[:3] == ["healthy", "2", "rows"] and "docs" not in captured.out
    assert "collection 'docs' looks damaged: Milvus reports 0 rows, multiembed last stored 4" in captured.err
