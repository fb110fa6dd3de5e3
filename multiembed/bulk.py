"""Bulk import files: an encode run written as the parquet files Milvus' bulk import reads, and the import.

A run of millions of items goes faster into a Milvus server as files the server reads itself than as
upserts. :func:`export_bulk` writes what pymilvus' ``LocalBulkWriter`` writes for the collection's
schema (:func:`multiembed.milvus.schema.schema_for`): ``DIR/<uuid>/1.parquet``, ``2.parquet``, ...,
each holding up to ``chunk_bytes`` of rows (128 MB) by the writer's own size estimate, in row groups
of about 32 MB (1,000 to 1,000,000 rows). The columns are the schema's fields in order: ``id``, the
vector field(s) (dense as ``list<float32>``, sparse as ``{"dimension": weight}`` JSON text), ``source``,
``modality``, ``model``, ``text`` (text documents), and the dynamic fields as JSON text in ``$meta``;
a field Milvus' BM25 function fills is left to the server. ``DIR/manifest.json`` lists the files and
records the encoder identity, so :func:`import_bulk` can make the collection without loading the model.

Bulk import does not upsert: an id stored twice is two rows. An export holds each content key once,
and :func:`import_bulk` records in the collection which files it imported, so running it again
imports only the files that are not in yet.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from multiembed.embeddings import Embeddings, ItemError
from multiembed.errors import BackendError, ConfigError, SchemaMismatchError
from multiembed.output import atomic_path
from multiembed.outputs import sparse_row_dict

if TYPE_CHECKING:
    from multiembed.encoder import Encoder
    from multiembed.milvus.client import GuardedClient
    from multiembed.milvus.schema import CollectionInfo

MB = 1024 * 1024
#: what LocalBulkWriter writes per file before it starts the next (its ``chunk_size``)
CHUNK_BYTES = 128 * MB
#: its row-group target, and the bounds on rows per group
ROW_GROUP_BYTES = 32 * MB
ROW_GROUP_ROWS = (1_000, 1_000_000)
DYNAMIC_FIELD = "$meta"
MANIFEST = "manifest.json"
FORMAT = "multiembed-bulk"
#: collection property: the export files already imported into it (JSON list of "<export>/<file>")
IMPORTED_PROPERTY = "multiembed.imported"


@dataclass
class BulkReport:
    """What an export wrote: the files (relative to its folder, grouped as ``bulk_import`` takes
    them), the rows, items left out as repeats, and the failures with reasons."""

    directory: Path
    files: list[list[str]] = field(default_factory=list)
    rows: int = 0
    skipped: int = 0
    errors: list[ItemError] = field(default_factory=list)


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


def row_group_rows(size: int, rows: int) -> int:
    """LocalBulkWriter's row-group size for a buffer of ``rows`` rows estimated at ``size`` bytes."""
    per_row = size // max(rows, 1) + 1
    low, high = ROW_GROUP_ROWS
    return min(max(ROW_GROUP_BYTES // per_row, low), high)


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


# ---- import -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Export:
    """A folder :func:`export_bulk` wrote, as its manifest describes it."""

    directory: Path
    info: CollectionInfo
    files: list[list[str]]
    rows: int

    @classmethod
    def read(cls, directory: str | Path) -> Export:
        from multiembed.milvus.schema import CollectionInfo

        folder = Path(directory)
        path = folder / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{folder} holds no {MANIFEST}: not a finished `multiembed export-bulk` run"
            ) from None
        except ValueError as error:
            raise ConfigError(f"{path} is damaged ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ConfigError(f"{path} is not a multiembed bulk export manifest")
        try:
            record = manifest["collection"]
            info = CollectionInfo(
                record["config"], bool(record["hybrid"]), dict(record["fields"]), bool(record["keeps_text"])
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(f"{path} records no collection identity ({error})") from None
        files = [[str(name) for name in group] for group in manifest["files"]]
        missing = [name for group in files for name in group if not (folder / name).is_file()]
        if missing:
            raise ConfigError(f"{folder}: files listed in {MANIFEST} are missing: {', '.join(missing[:5])}")
        return cls(folder, info, files, int(manifest["rows"]))


def _imported(client: GuardedClient, collection: str) -> list[str]:
    raw = (client.describe_collection(collection).get("properties") or {}).get(IMPORTED_PROPERTY)
    return list(json.loads(raw)) if raw else []


def _collection_for(
    client: GuardedClient, uri: str, collection: str, export: Export, index_type: str, params: Any
) -> None:
    """Check the server and an existing collection against the export, or make the collection."""
    from multiembed.identity import mismatches
    from multiembed.milvus.schema import CollectionInfo, index_params_of, schema_of
    from multiembed.milvus.store import create_collection
    from multiembed.milvus.versions import check_server, needed_features, server_index_params, server_version

    info = export.info
    check_server(uri, *server_version(client), features=needed_features(info.outputs, info.hybrid),
                 index_type=index_type)  # fmt: skip
    if client.has_collection(collection):
        existing = CollectionInfo.from_description(client.describe_collection(collection))
        if existing is None:
            raise SchemaMismatchError(f"collection {collection!r} was not created by multiembed")
        problems = mismatches(existing.config, info.config, where="collection")
        if existing.hybrid != info.hybrid:
            problems.append(f"BM25: collection has {existing.hybrid}, export has {info.hybrid}")
        if problems:
            raise SchemaMismatchError(
                f"collection {collection!r} and {export.directory}: " + "; ".join(problems)
            )
        return
    dense = [spec for spec in info.outputs if spec.kind == "dense"]
    params = server_index_params(index_type, dense[0].dim, params) if dense else params
    create_collection(
        client,
        collection,
        schema=schema_of(info),
        index_params=index_params_of(info.outputs, index_type, params=params, hybrid=info.hybrid),
        properties=info.to_property(),
    )


def _wait(handler: Any, tasks: dict[int, str], timeout: float) -> int:
    """Wait for every import task to complete; the rows they imported. A failed task is one line."""
    from pymilvus.client.types import BulkInsertState

    deadline = time.monotonic() + timeout
    rows = 0
    pending = dict(tasks)
    while pending:
        for task, name in list(pending.items()):
            state = handler.get_bulk_insert_state(task)
            if state.state in (BulkInsertState.ImportFailed, BulkInsertState.ImportFailedAndCleaned):
                reason = " ".join(str(state.infos.get("failed_reason", "")).split())
                raise BackendError(f"Milvus could not import {name}: {reason or state.state_name}")
            if state.state == BulkInsertState.ImportCompleted:
                rows += int(state.row_count)
                del pending[task]
        if pending and time.monotonic() > deadline:
            raise BackendError(f"bulk import of {len(pending)} file(s) not finished after {timeout:.0f}s")
        if pending:
            time.sleep(0.5)
    return rows


def import_bulk(
    uri: str,
    collection: str,
    directory: str | Path,
    *,
    server_path: str | None = None,
    index_type: str = "AUTOINDEX",
    index_params: dict[str, Any] | None = None,
    timeout: float = 3600.0,
) -> int:
    """Import an export's files into ``collection`` on the Milvus server at ``uri``; rows imported.

    The server reads the files itself: ``server_path`` is where it sees ``directory`` (by default
    the folder's absolute path, right for a server on this machine with local storage, such as the
    ``milvus`` package's; for MinIO/S3, upload the folder and give its path in the bucket). The
    collection is made from the recorded identity if it does not exist; an existing one must hold
    the same encoder's vectors. Files imported before (recorded in the collection) are skipped.
    Import does not upsert: an item the collection already holds from an ``add``/``index`` run
    becomes a second row, so import into a new collection, or one filled by imports only.
    """
    from multiembed.milvus.client import GuardedClient, close_client, is_lite, open_client

    if is_lite(uri):
        raise ConfigError(
            f"{uri} is Milvus Lite, which has no bulk import; store with `multiembed index` or "
            "MilvusStore, or give a server URL (http://host:19530)"
        )
    export = Export.read(directory)
    root = server_path.rstrip("/") if server_path else str(export.directory.resolve())
    client = open_client(uri)
    try:
        _collection_for(client, uri, collection, export, index_type, index_params)
        done = _imported(client, collection)
        handler = GuardedClient(client.raw._get_connection(), uri)  # the gRPC Import call Milvus 2.3+ has
        rows = 0
        # one file per task (what Milvus 2.3 takes for row-based files); each file's name holds its
        # export's uuid, so the names recorded say which files of which export are in already
        for name in (name for group in export.files for name in group if name not in done):
            task = handler.do_bulk_insert(collection, "", [f"{root}/{name}"])
            rows += _wait(handler, {task: name}, timeout)
            done.append(name)
            client.alter_collection_properties(collection, properties={IMPORTED_PROPERTY: json.dumps(done)})
        # segments imported into a loaded collection are served once it is loaded again
        client.load_collection(collection, refresh=True)
        return rows
    finally:
        close_client(client)


def iter_parquet_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """The rows of one bulk file, with ``$meta`` parsed (for checks and tests)."""
    for row in pq.read_table(path).to_pylist():
        if DYNAMIC_FIELD in row:
            row[DYNAMIC_FIELD] = json.loads(row[DYNAMIC_FIELD])
        yield row
