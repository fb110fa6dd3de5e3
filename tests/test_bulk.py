"""Bulk import files (`multiembed export-bulk`): pymilvus' bulk-writer layout for the collection's schema.

The layout (files, columns, types, `$meta`, row groups) is checked here without a server; importing
the files into a real Milvus server is in test_milvus_server.py.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import multiembed
from multiembed import ConfigError
from multiembed.bulk import (
    CHUNK_BYTES,
    MANIFEST,
    Export,
    export_bulk,
    file_schema,
    import_bulk,
    iter_parquet_rows,
    row_group_rows,
)
from multiembed.cli import main
from multiembed.milvus import schema_for

DOCS = ["a red bicycle", "the lazy dog", "milvus vector database", "a red bicycle", "", "sentence embedding"]


@pytest.fixture(scope="module")
def encoder(tiny_models):
    return multiembed.load("text", str(tiny_models["mean"]), device="cpu")


def test_files_have_the_bulk_writer_layout_for_the_collection_schema(encoder, tmp_path):
    report = export_bulk(encoder, DOCS, tmp_path / "bulk", progress=False)
    assert (report.rows, report.skipped) == (4, 1)  # the repeated text is written once
    assert [(error.source, error.reason) for error in report.errors] == [("#4", "empty text")]
    [[name]] = report.files
    run, file = name.split("/")
    assert file == "1.parquet" and len(run) == 36  # <uuid>/<flush number>.parquet, as LocalBulkWriter

    parquet = pq.ParquetFile(tmp_path / "bulk" / name)
    string, vector = pa.string(), pa.list_(pa.float32())
    columns = [(field.name, field.type) for field in parquet.schema_arrow]
    assert columns == [
        ("id", string),
        ("vector", vector),
        ("source", string),
        ("modality", string),
        ("model", string),
        ("text", string),
        ("$meta", string),  # the dynamic fields, as JSON text
    ]
    schema = schema_for(encoder)  # the fields of the collection, in its order, plus $meta
    assert [field.name for field in schema.fields] + ["$meta"] == [name for name, _ in columns]

    rows = list(iter_parquet_rows(tmp_path / "bulk" / name))
    texts = [DOCS[0], DOCS[1], DOCS[2], DOCS[5]]
    assert [row["text"] for row in rows] == texts
    assert [row["id"] for row in rows] == [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    assert [row["source"] for row in rows] == ["#0", "#1", "#2", "#5"]
    assert all(row["$meta"] == {} and row["modality"] == "text" for row in rows)
    expected = encoder.encode(texts).vectors
    np.testing.assert_array_equal(np.array([row["vector"] for row in rows], np.float32), expected)
    assert parquet.metadata.num_row_groups == 1


def test_the_manifest_records_files_rows_and_the_encoder(encoder, tmp_path):
    report = export_bulk(encoder, DOCS[:3], tmp_path / "bulk", progress=False)
    export = Export.read(tmp_path / "bulk")
    assert export.files == report.files and export.rows == 3
    assert export.info.config == encoder.config() and export.info.keeps_text and not export.info.hybrid
    manifest = json.loads((tmp_path / "bulk" / MANIFEST).read_text())
    assert manifest["format"] == "multiembed-bulk" and manifest["collection"]["fields"] == {"dense": "vector"}


def test_files_split_at_the_chunk_size_into_numbered_files(encoder, tmp_path):
    texts = [f"document number {number}" for number in range(40)]
    report = export_bulk(encoder, texts, tmp_path / "bulk", chunk_bytes=2_000, batch_size=8, progress=False)
    names = [name for [name] in report.files]
    assert len(names) > 1 and [name.split("/")[1] for name in names] == [
        f"{number}.parquet" for number in range(1, len(names) + 1)
    ]
    assert len({name.split("/")[0] for name in names}) == 1  # one export, one uuid folder
    rows = [row["text"] for name in names for row in iter_parquet_rows(tmp_path / "bulk" / name)]
    assert rows == texts


def test_row_groups_are_sized_as_the_bulk_writer_sizes_them():
    assert row_group_rows(size=100, rows=100) == 1_000_000  # tiny rows: at most a million
    assert row_group_rows(size=100 * CHUNK_BYTES, rows=100) == 1_000  # huge rows: at least a thousand
    assert row_group_rows(size=1_000 * 3_200, rows=1_000) == 32 * 1024 * 1024 // 3_201  # ~32 MB


def test_a_bm25_collection_leaves_the_function_field_to_the_server(encoder, tmp_path):
    schema = file_schema(schema_for(encoder, hybrid=True))
    assert "sparse" not in schema.names and schema.names[-2:] == ["text", "$meta"]


def test_sparse_vectors_are_written_as_json_text(tmp_path):
    from multiembed.model.sparse import BM25EmbeddingFunction, build_default_analyzer

    function = BM25EmbeddingFunction(build_default_analyzer("en"))
    function.fit(DOCS)
    function.save(tmp_path / "bm25.json")
    bm25 = multiembed.load("bm25", str(tmp_path / "bm25.json"), device="cpu")
    report = export_bulk(bm25, ["red bicycle", "lazy dog dog"], tmp_path / "bulk", progress=False)
    [[name]] = report.files
    assert pq.read_schema(tmp_path / "bulk" / name).field("vector").type == pa.string()
    rows = list(iter_parquet_rows(tmp_path / "bulk" / name))
    expected = bm25.encode(["red bicycle", "lazy dog dog"]).vectors
    for row, index in zip(rows, range(2), strict=True):
        weights = {int(key): value for key, value in json.loads(row["vector"]).items()}
        assert weights == pytest.approx(dict(zip(expected[index].indices, expected[index].data, strict=True)))


def test_exports_go_into_a_new_folder_and_import_needs_a_server(encoder, tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "other.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_bulk(encoder, DOCS, tmp_path / "used")
    with pytest.raises(ConfigError, match=r"holds no manifest\.json"):
        Export.read(tmp_path / "used")
    export_bulk(encoder, DOCS[:2], tmp_path / "bulk", progress=False)
    with pytest.raises(ConfigError, match="Milvus Lite, which has no bulk import"):
        import_bulk(str(tmp_path / "m.db"), "docs", tmp_path / "bulk")
    assert main(["import-bulk", str(tmp_path / "bulk"), "--uri", str(tmp_path / "m.db"), "-c", "x"]) == 2
    assert "has no bulk import" in capsys.readouterr().err
