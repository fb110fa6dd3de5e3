"""Writing bulk import files: an encode run as the parquet files a Milvus server's bulk import reads.

Rows are turned into columns and sized as ``LocalBulkWriter`` does, and written as numbered files
(atomically) in the layout of :mod:`.layout`; the manifest, written last, records the encoder
identity and lists the files. An export holds each content key once (bulk import does not upsert).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from multiembed.bulk.layout import CHUNK_BYTES, DYNAMIC_FIELD, FORMAT, MANIFEST, file_schema, row_group_rows
from multiembed.embeddings import Embeddings, ItemError
from multiembed.errors import ConfigError
from multiembed.output import atomic_path
from multiembed.outputs import sparse_row_dict

if TYPE_CHECKING:
    from multiembed.encoder import Encoder
    from multiembed.milvus.schema import CollectionInfo


@dataclass
class BulkReport:
    """What an export wrote: the files (relative to its folder, grouped as ``bulk_import`` takes
    them), the rows, items left out as repeats, and the failures with reasons."""

    directory: Path
    files: list[list[str]] = field(default_factory=list)
    rows: int = 0
    skipped: int = 0
    errors: list[ItemError] = field(default_factory=list)


def _dense(matrix: np.ndarray) -> pa.Array:
    vectors = np.ascontiguousarray(matrix, dtype=np.float32)
    rows, dim = vectors.shape
    offsets = pa.array(np.arange(0, (rows + 1) * dim, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))


class _Columns:
    """Turns each window of results into bulk-file columns, and estimates the rows' sizes as
    LocalBulkWriter does (text by its length, dense 4 bytes a dimension, sparse 12 a weight)."""

    def __init__(self, info: CollectionInfo, schema: pa.Schema) -> None:
        from multiembed.milvus.schema import TEXT_FIELD

        self.info = info
        self.schema = schema
        self.outputs = {info.fields[spec.name]: spec for spec in info.outputs if spec.name in info.fields}
        self.text_field = TEXT_FIELD

    def table(self, part: Embeddings) -> tuple[pa.Table, np.ndarray]:
        from multiembed.milvus.schema import fit_varchar

        rows = len(part)
        texts = {
            "id": part.ids,
            "source": [fit_varchar(source) for source in part.sources],
            "modality": [part.modality] * rows,
            "model": [part.model] * rows,
            DYNAMIC_FIELD: ["{}"] * rows,
        }
        if self.info.keeps_text:
            texts[self.text_field] = [fit_varchar(str(raw)) for raw in part.raws]
        columns: list[pa.Array] = []
        sizes = np.zeros(rows, dtype=np.int64)  # dynamic fields are not counted, as by the writer
        for column in self.schema:
            spec = self.outputs.get(column.name)
            if spec is None:
                values = texts[column.name]
                if column.name != DYNAMIC_FIELD:
                    sizes += np.fromiter((len(value) for value in values), np.int64, rows)
                columns.append(pa.array(values, pa.string()))
            elif spec.kind == "dense":
                sizes += spec.dim * 4
                columns.append(_dense(part.outputs[spec.name]))
            else:
                matrix = part.outputs[spec.name]
                sizes += 12 * np.diff(matrix.indptr)
                columns.append(
                    pa.array([json.dumps(sparse_row_dict(matrix, row)) for row in range(rows)], pa.string())
                )
        return pa.Table.from_arrays(columns, schema=self.schema), sizes


def _storable(part: Embeddings, info: CollectionInfo) -> Embeddings:
    """Milvus refuses a sparse vector without a nonzero weight: such rows become failures."""
    empty = {
        row
        for spec in info.outputs
        if spec.kind == "sparse" and spec.name in info.fields
        for row in range(len(part))
        if part.outputs[spec.name].indptr[row] == part.outputs[spec.name].indptr[row + 1]
    }
    return part.without(sorted(empty), "no nonzero weight in its sparse vector (nothing to store)")


class _Files:
    """Buffers rows and writes a numbered file (atomically) whenever ``chunk_bytes`` are buffered."""

    def __init__(self, directory: Path, schema: pa.Schema, chunk_bytes: int) -> None:
        self.run = str(uuid.uuid4())
        self.directory = directory
        self.schema = schema
        self.chunk_bytes = chunk_bytes
        self.tables: list[pa.Table] = []
        self.size = self.rows = 0
        self.files: list[list[str]] = []

    def add(self, table: pa.Table, sizes: np.ndarray) -> None:
        """Append rows; like LocalBulkWriter, a file ends with the row that takes it past ``chunk_bytes``."""
        while table.num_rows:
            total = self.size + np.cumsum(sizes)
            over = np.flatnonzero(total > self.chunk_bytes)
            cut = int(over[0]) + 1 if len(over) else table.num_rows
            self.tables.append(table.slice(0, cut))
            self.size, self.rows = int(total[cut - 1]), self.rows + cut
            table, sizes = table.slice(cut), sizes[cut:]
            if len(over):
                self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        name = f"{self.run}/{len(self.files) + 1}.parquet"
        table = pa.concat_tables(self.tables)
        with atomic_path(self.directory / name) as temporary:
            pq.write_table(table, temporary, row_group_size=row_group_rows(self.size, self.rows))
        self.files.append([name])
        self.tables, self.size, self.rows = [], 0, 0


def export_bulk(
    encoder: Encoder,
    inputs: Iterable[Any],
    directory: str | Path,
    *,
    hybrid: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
    batch_size: int | None = None,
    progress: bool | None = None,
    total: int | None = None,
) -> BulkReport:
    """Embed ``inputs`` into bulk import files in ``directory`` (a new or empty folder).

    ``hybrid`` writes for a collection with Milvus' BM25 over the text (the server computes that
    field on import). Items are keyed by content like everywhere else; a repeated item is written once.
    """
    from multiembed.milvus.schema import PROPERTY, CollectionInfo, schema_for

    folder = Path(directory)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} is not an empty folder; bulk files go into a new one")
    if chunk_bytes < 1:
        raise ConfigError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    info = CollectionInfo.of(encoder, hybrid)
    schema = file_schema(schema_for(encoder, hybrid=hybrid), encoder.config())
    columns = _Columns(info, schema)
    files = _Files(folder, schema, chunk_bytes)
    report = BulkReport(folder)
    seen: set[bytes] = set()

    def written(keys: Sequence[str]) -> set[str]:  # each content key once in the whole export
        return {key for key in keys if bytes.fromhex(key)[:16] in seen}

    folder.mkdir(parents=True, exist_ok=True)
    for part in encoder.iter_encode(
        inputs,
        batch_size=batch_size,
        progress=progress,
        skip_keys=written,
        keep_raw=info.keeps_text,
        total=total,
    ):
        part = _storable(part, info)
        seen.update(bytes.fromhex(key)[:16] for key in part.ids)
        files.add(*columns.table(part))
        report.rows += len(part)
        report.skipped += len(part.skipped)
        report.errors.extend(part.errors)
    files.flush()
    report.files = files.files
    manifest = {
        "format": FORMAT,
        "version": 1,
        "collection": json.loads(info.to_property()[PROPERTY]),
        "files": report.files,
        "rows": report.rows,
    }
    with atomic_path(folder / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return report
