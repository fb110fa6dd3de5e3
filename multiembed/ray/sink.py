"""MilvusSink: a Ray Data datasink that upserts :func:`embed_dataset`'s rows into a collection.

The collection is made (or reopened, its recorded encoder checked) the way :class:`MilvusStore`
does it, by a ``MilvusStore`` on the driver, before any row is written. Write tasks get only plain
settings: each opens its own client, and closes it when done. Rows are upserted in requests of at
most ~32 MB; items already stored (by content key) or repeated are skipped, and rows that failed
upstream are counted with their reasons, so the report reads like ``MilvusStore.add``'s. Rows the
embedding job left out because the collection held them already (``embed_with(stored=)``, given
:meth:`MilvusSink.stored_keys`) are counted as skipped too.

Milvus Lite is one file that one process may hold at a time: on Lite the write tasks run on the
driver's node, one at a time (write with ``concurrency=sink.write_concurrency``, which is 1 there;
with more, the tasks wait for each other on a lock instead of failing), and the driver holds the
database only before and after them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from ray.data import Datasink
from ray.data.block import Block, BlockAccessor

from multiembed.embeddings import ItemError
from multiembed.errors import ConfigError, SchemaMismatchError
from multiembed.identity import load_arguments
from multiembed.milvus.client import (
    DEFAULT_URI,
    GuardedClient,
    close_client,
    is_lite,
    lite_path,
    open_client,
    read_options,
    row_count,
)
from multiembed.milvus.results import AddReport
from multiembed.milvus.schema import (
    TEXT_FIELD,
    CollectionInfo,
    check_backend,
    fit_varchar,
    rows_property,
    stored_outputs,
)
from multiembed.milvus.store import MilvusStore
from multiembed.milvus.upsert import requests
from multiembed.outputs import OutputSpec
from multiembed.ray.keys import StoredKeys, read_keys
from multiembed.ray.tables import ERROR_COLUMN, STORED_COLUMN, dense_matrix, sparse_dicts

if TYPE_CHECKING:
    from ray.data._internal.execution.interfaces import TaskContext
    from ray.data.datasource.datasink import WriteResult

    from multiembed.encoder import Encoder

#: at most this many rows per request, whatever their size (a key lookup names each of them)
MAX_REQUEST_ROWS = 2048
EMPTY_SPARSE = "no nonzero weight in its sparse vector (nothing to store)"


@dataclass
class WriteCounts:
    """What one write task did: rows added, rows already there, and the failed items (source, reason)."""

    added: int = 0
    skipped: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


@contextlib.contextmanager
def one_writer(uri: str) -> Iterator[None]:
    """On Milvus Lite, hold a lock beside the database so write tasks take turns instead of failing."""
    if not is_lite(uri):
        yield
        return
    import fcntl

    name = hashlib.sha256(lite_path(uri).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"multiembed-lite-{name}.lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class _Target:
    """The collection's fields, as a write task reads them off the collection's own record."""

    collection: str
    outputs: tuple[tuple[str, OutputSpec], ...]
    modality: str
    model: str
    keeps_text: bool
    hybrid: bool

    @classmethod
    def of(cls, client: GuardedClient, collection: str) -> _Target:
        info = CollectionInfo.from_description(client.describe_collection(collection))
        if info is None:
            raise SchemaMismatchError(f"collection {collection!r} was not created by multiembed")
        outputs = tuple(stored_outputs(info.outputs))
        return cls(collection, outputs, info.modality, info.model, info.keeps_text, info.hybrid)


class MilvusSink(Datasink[WriteCounts]):
    """Upserts :func:`multiembed.ray.embed_dataset` rows into a Milvus collection (Lite file or server).

    Made like ``MilvusStore(uri, collection, modality=, model=, **encoder_options)``: a new
    collection gets the schema, index and recorded identity of that encoder; an existing one is
    reopened and its recorded encoder checked against the options given. That happens on the driver
    in :meth:`open` (called by Ray before the first write, or by you, to fail fast); ``device`` is
    where that copy of the encoder loads. After the write, :attr:`report` holds the counts and the
    failed items, and :attr:`rows` the collection's row count.

    An item already stored is skipped, never written twice (its key is the row's primary key). On a
    server, write tasks run in parallel, so when one dataset holds the same item twice and two tasks
    reach it at once, both may count it as added: the collection still holds it once.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str] = DEFAULT_URI,
        collection: str = "multiembed",
        *,
        modality: str | None = None,
        model: str | None = None,
        hybrid: bool = False,
        index_type: str = "AUTOINDEX",
        index_params: dict[str, Any] | None = None,
        device: str = "cpu",
        accept_row_count: bool | Literal["repair"] = False,
        rows_per_write: int | None = 4096,
        **encoder_options: Any,
    ) -> None:
        self.uri = os.fspath(uri)
        check_backend(self.uri, index_type=index_type)
        self.collection = collection
        self._store_arguments: dict[str, Any] = {
            "modality": modality,
            "model": model,
            "hybrid": hybrid,
            "index_type": index_type,
            **({"index_params": index_params} if index_params is not None else {}),
            "device": device,
            "accept_row_count": accept_row_count,
            **encoder_options,
        }
        self._encoder_options = dict(encoder_options)
        self._rows_per_write = rows_per_write
        self.info: CollectionInfo | None = None
        #: whether :meth:`open` made the collection (it did not exist)
        self.created = False
        #: why the collection looked damaged when opened (see ``MilvusStore.row_shortfall``)
        self.row_shortfall: str | None = None
        self.rows_expected = 0
        self.report = AddReport()
        #: rows in the collection after the write (None before)
        self.rows: int | None = None
        #: how many write tasks the last write ran
        self.write_tasks = 0

    # ---- on the driver -------------------------------------------------------------------------
    def open(self) -> Encoder:
        """Create the collection, or reopen it and check its encoder; returns that encoder (on ``device``)."""
        with MilvusStore(self.uri, self.collection, **self._store_arguments) as store:
            self.info, self.created = store.info, store.created
            self.row_shortfall, self.rows_expected = store.row_shortfall, store.rows_expected
            return store.encoder

    def encoder_arguments(self) -> tuple[str, str, dict[str, Any]]:
        """``(modality, model, options)`` that load the collection's encoder (the recorded identity
        and the options given here): what the embedding actors must load."""
        if self.info is None:
            raise ConfigError("call open() first: the collection's encoder is known once it is opened")
        modality, model, options = load_arguments(self.info.config)
        return modality, self._store_arguments["model"] or model, {**options, **self._encoder_options}

    def stored_keys(self) -> StoredKeys:
        """The keys the collection holds now, read here (on the driver): what ``embed_with(stored=)``
        leaves out before the model. Call it before the write starts (on Lite its task holds the file)."""
        client = open_client(self.uri, create=False)
        try:
            client.load_collection(self.collection)  # "released" in a process that did not make it
            return StoredKeys(read_keys(client, self.collection))
        finally:
            close_client(client)

    def drop(self) -> None:
        """Delete the collection (e.g. one :meth:`open` made for a run that had nothing to write)."""
        client = open_client(self.uri, create=False)
        try:
            client.drop_collection(self.collection)
        finally:
            close_client(client)

    @property
    def write_concurrency(self) -> int | None:
        """``write_datasink(concurrency=)``: 1 on Milvus Lite (one writer), None (Ray decides) on servers."""
        return 1 if is_lite(self.uri) else None

    @property
    def supports_distributed_writes(self) -> bool:
        """A Lite database is a directory on the driver's node: only tasks there can open it."""
        return not is_lite(self.uri)

    @property
    def min_rows_per_write(self) -> int | None:
        return self._rows_per_write

    def on_write_start(self, schema: pa.Schema | None = None) -> None:
        """Open the collection (unless :meth:`open` already did) and start a new :attr:`report`."""
        self.report, self.rows, self.write_tasks = AddReport(), None, 0
        if self.info is None:
            self.open()

    def on_write_complete(self, write_result: WriteResult[WriteCounts]) -> None:
        """Sum the tasks' counts into :attr:`report`; on Lite, record the rows (damage detection)."""
        self.write_tasks = len(write_result.write_returns)
        for counts in write_result.write_returns:
            self.report.added += counts.added
            self.report.skipped += counts.skipped
            self.report.errors += [ItemError(-1, source, reason) for source, reason in counts.errors]
        client = open_client(self.uri, create=False)
        try:
            self.rows = row_count(client, self.collection)
            if is_lite(self.uri):
                rows = rows_property(max(self.rows, self.rows_expected))
                client.alter_collection_properties(self.collection, properties=rows)
        finally:
            close_client(client)

    # ---- in the write tasks ----------------------------------------------------------------------
    def write(self, blocks: Iterable[Block], ctx: TaskContext) -> WriteCounts:
        """Upsert the rows of ``blocks``; one client for the task, opened here and closed here."""
        counts = WriteCounts()
        seen: set[str] = set()
        with one_writer(self.uri):
            client = open_client(self.uri, create=False)
            try:
                target = _Target.of(client, self.collection)
                client.load_collection(self.collection)  # "released" in a process that did not make it
                for block in blocks:
                    table = _not_stored(BlockAccessor.for_block(block).to_arrow(), counts)
                    rows = _rows(table, target, counts)
                    fresh = _first_of_each(rows, seen)
                    counts.skipped += len(rows) - len(fresh)
                    for request in requests(fresh, target.outputs, MAX_REQUEST_ROWS):
                        _upsert_new(client, target.collection, request, counts)
            finally:
                close_client(client)
        return counts


def _check(table: pa.Table, target: _Target) -> None:
    missing = [
        name
        for name in ("id", "source", *(name for name, _ in target.outputs))
        if name not in table.column_names
    ]
    if missing:
        raise ConfigError(
            f"the rows have no {', '.join(missing)} column(s) (they have {', '.join(table.column_names)}); "
            "write what multiembed.ray.embed_dataset returns"
        )
    if target.hybrid and TEXT_FIELD not in table.column_names:
        raise ConfigError(f"collection {target.collection!r} is hybrid (BM25): the rows need their text")
    for name, recorded in (("modality", target.modality), ("model", target.model)):
        if name in table.column_names:
            others = set(table.column(name).drop_null().unique().to_pylist()) - {recorded}
            if others:
                raise SchemaMismatchError(
                    f"collection {target.collection!r} holds {recorded!r} vectors; these rows were made "
                    f"with {sorted(others)[0]!r}"
                )


def _not_stored(table: pa.Table, counts: WriteCounts) -> pa.Table:
    """The rows to write: those the job left out as already stored count as skipped."""
    if STORED_COLUMN not in table.column_names:
        return table
    stored = table.column(STORED_COLUMN).fill_null(False)
    counts.skipped += int(pc.sum(stored).as_py() or 0)
    return table.filter(pc.invert(stored)).drop_columns([STORED_COLUMN])


def _rows(table: pa.Table, target: _Target, counts: WriteCounts) -> list[dict[str, Any]]:
    """Milvus rows for the items that worked; the failed ones go to ``counts.errors``."""
    _check(table, target)
    if ERROR_COLUMN in table.column_names:
        reasons = table.column(ERROR_COLUMN).to_pylist()
        sources = table.column("source").to_pylist()
        counts.errors += [
            (str(source), reason)
            for source, reason in zip(sources, reasons, strict=True)
            if reason is not None
        ]
        table = table.filter(table.column(ERROR_COLUMN).is_null())
    columns: dict[str, list[Any]] = {}
    for name, spec in target.outputs:
        column = table.column(name)
        columns[name] = list(dense_matrix(spec, column)) if spec.kind == "dense" else sparse_dicts(column)
    ids = table.column("id").to_pylist()
    sources = [fit_varchar(str(source)) for source in table.column("source").to_pylist()]
    texts = (
        table.column(TEXT_FIELD).to_pylist()
        if target.keeps_text and TEXT_FIELD in table.column_names
        else None
    )
    rows: list[dict[str, Any]] = []
    for index, key in enumerate(ids):
        vectors = {name: values[index] for name, values in columns.items()}
        if any(spec.kind == "sparse" and not vectors[name] for name, spec in target.outputs):
            counts.errors.append((sources[index], EMPTY_SPARSE))  # Milvus refuses the whole request
            continue
        row = {
            "id": key,
            **vectors,
            "source": sources[index],
            "modality": target.modality,
            "model": target.model,
        }
        if texts is not None and texts[index] is not None:
            row[TEXT_FIELD] = fit_varchar(texts[index])
        rows.append(row)
    return rows


def _first_of_each(rows: list[dict[str, Any]], seen: set[str]) -> list[dict[str, Any]]:
    """The rows whose key this task has not had yet (Milvus refuses a key twice in one request)."""
    fresh = []
    for row in rows:
        if row["id"] not in seen:
            seen.add(row["id"])
            fresh.append(row)
    return fresh


def _upsert_new(
    client: GuardedClient, collection: str, rows: list[dict[str, Any]], counts: WriteCounts
) -> None:
    """Upsert the rows whose key is not stored yet; the others count as skipped (as ``MilvusStore.add``)."""
    keys = [row["id"] for row in rows]
    found = client.query(collection, ids=keys, output_fields=["id"], **read_options(client.uri))
    stored = {row["id"] for row in found}
    new = [row for row in rows if row["id"] not in stored]
    if new:
        client.upsert(collection, new)
    counts.added += len(new)
    counts.skipped += len(rows) - len(new)
