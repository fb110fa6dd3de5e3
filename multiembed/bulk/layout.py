"""The layout of a bulk export: what pymilvus' ``LocalBulkWriter`` writes for a collection's schema.

Both halves share it: :mod:`.export` writes these files and :mod:`.importer` reads the manifest.
Files are ``DIR/<uuid>/1.parquet``, ``2.parquet``, ..., each holding up to :data:`CHUNK_BYTES` of
rows by the writer's own size estimate, in row groups of about :data:`ROW_GROUP_BYTES`
(:func:`row_group_rows`). Their columns (:func:`file_schema`) are the schema's fields in order, with
the dynamic fields as JSON text in ``$meta``; ``DIR/manifest.json`` lists the files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from multiembed.errors import ConfigError

MB = 1024 * 1024
#: what LocalBulkWriter writes per file before it starts the next (its ``chunk_size``)
CHUNK_BYTES = 128 * MB
#: its row-group target, and the bounds on rows per group
ROW_GROUP_BYTES = 32 * MB
ROW_GROUP_ROWS = (1_000, 1_000_000)
DYNAMIC_FIELD = "$meta"
MANIFEST = "manifest.json"
FORMAT = "multiembed-bulk"


def _arrow_type(data_type: Any) -> pa.DataType:
    from pymilvus import DataType

    types = {
        DataType.VARCHAR: pa.string(),
        DataType.JSON: pa.string(),  # JSON objects are written as text
        DataType.FLOAT_VECTOR: pa.list_(pa.float32()),
        DataType.SPARSE_FLOAT_VECTOR: pa.string(),  # {"dimension": weight} as text
    }
    if data_type not in types:
        raise ConfigError(f"bulk files for a {data_type.name} field are not supported")
    return types[data_type]


def file_schema(schema: Any, config: dict[str, Any] | None = None) -> pa.Schema:
    """The Arrow schema of bulk files for a pymilvus collection schema, as its bulk writer deduces it:
    every field but an auto id or a function's output, in order, then ``$meta`` if fields are dynamic."""
    fields = [
        pa.field(item.name, _arrow_type(item.dtype))
        for item in schema.fields
        if not (item.is_primary and item.auto_id) and not item.is_function_output
    ]
    if schema.enable_dynamic_field:
        fields.append(pa.field(DYNAMIC_FIELD, pa.string()))
    metadata = {b"multiembed.config": json.dumps(config, sort_keys=True).encode()} if config else None
    return pa.schema(fields, metadata=metadata)


def row_group_rows(size: int, rows: int) -> int:
    """LocalBulkWriter's row-group size for a buffer of ``rows`` rows estimated at ``size`` bytes."""
    per_row = size // max(rows, 1) + 1
    low, high = ROW_GROUP_ROWS
    return min(max(ROW_GROUP_BYTES // per_row, low), high)


def iter_parquet_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """The rows of one bulk file, with ``$meta`` parsed (for checks and tests)."""
    for row in pq.read_table(path).to_pylist():
        if DYNAMIC_FIELD in row:
            row[DYNAMIC_FIELD] = json.loads(row[DYNAMIC_FIELD])
        yield row
