"""Writers: columns, formats, atomic replacement."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from multiembed.embeddings import Embeddings
from multiembed.errors import ConfigError
from multiembed.output import format_for, write_embeddings


@pytest.fixture
def result() -> Embeddings:
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    return Embeddings.dense(
        vectors, ["a" * 64, "b" * 64], ["x.txt:1", "x.txt:2"], [0, 1], modality="text", model="m"
    )


def test_parquet_columns(result, tmp_path):
    path = write_embeddings(result, tmp_path / "out.parquet")
    table = pq.read_table(path)
    assert table.column_names == ["id", "source", "modality", "model", "vector"]
    assert str(table.schema.field("vector").type) == "list<element: float>"
    assert table.column("vector").to_pylist() == result.vectors.tolist()
    assert table.schema.metadata[b"multiembed.dim"] == b"3"


def test_npy_and_jsonl(result, tmp_path):
    np.testing.assert_array_equal(np.load(write_embeddings(result, tmp_path / "o.npy")), result.vectors)
    lines = write_embeddings(result, tmp_path / "o.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows[1] == {
        "id": "b" * 64,
        "vector": [3.0, 4.0, 5.0],
        "source": "x.txt:2",
        "modality": "text",
        "model": "m",
    }


def test_format_flag_overrides_suffix(result, tmp_path):
    path = write_embeddings(result, tmp_path / "vectors.bin", fmt="npy")
    assert path.name == "vectors.bin"
    np.testing.assert_array_equal(np.load(path), result.vectors)  # .npy content, whatever the suffix


def test_unknown_suffix_is_refused():
    with pytest.raises(ConfigError, match=r"cannot tell the output format from 'out\.csv'"):
        format_for(Path("out.csv"))


def test_a_failed_write_leaves_the_old_file_and_no_temp(result, tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("previous")
    broken = Embeddings.dense(np.zeros((1, 2), np.float32), ["x"], ["s"], [0], modality="text", model="m")
    broken.outputs["dense"] = object()  # makes the writer fail midway
    with pytest.raises((TypeError, ValueError)):
        write_embeddings(broken, target)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_a_finished_write_removes_temporaries_of_killed_runs(tmp_path: Path) -> None:
    """SIGKILL skips cleanup, so the next successful write on the same target removes what it left."""
    import os

    from multiembed.output import atomic_path

    target = tmp_path / "vectors.parquet"
    stale = tmp_path / ".vectors.parquet.0123456789ab.tmp"
    stale.write_bytes(b"half a file")
    os.utime(stale, (1, 1))
    other_target = tmp_path / ".other.parquet.0123456789ab.tmp"
    other_target.write_bytes(b"not ours")
    os.utime(other_target, (1, 1))
    with atomic_path(target) as temporary:
        live = tmp_path / ".vectors.parquet.ba9876543210.tmp"  # another writer, started after us
        live.write_bytes(b"still being written")
        temporary.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert not stale.exists() and other_target.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, other_target.name, live.name])


def test_a_target_that_is_not_a_regular_file_is_refused_and_left_as_it_is(result, tmp_path):
    """Renaming over a FIFO, /dev/stdout or a device would replace it with a plain file."""
    os.mkfifo(tmp_path / "pipe.npy")
    (tmp_path / "folder.npy").mkdir()
    (tmp_path / "out.npy").symlink_to(tmp_path / "pipe.npy")  # as /dev/stdout -> /proc/self/fd/1
    for name, kind in (("pipe.npy", "a FIFO"), ("folder.npy", "a directory"), ("out.npy", "a FIFO")):
        with pytest.raises(ConfigError, match=f"cannot write .*{name}: it is {kind}"):
            write_embeddings(result, tmp_path / name)
    assert stat.S_ISFIFO((tmp_path / "pipe.npy").stat().st_mode) and (tmp_path / "out.npy").is_symlink()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["folder.npy", "out.npy", "pipe.npy"]
