"""Writers: columns, formats, atomic replacement."""

from __future__ import annotations

import json
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
