"""MilvusStore: a collection of one encoder's vectors, added idempotently and searched by any output.

Keys are content hashes: upserting is idempotent, already-stored items are skipped before the
model runs, and a killed run is finished by running it again. The collection records the encoder's
identity; reopening rebuilds exactly that encoder, and another one is refused with the differing
keys named.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from multiembed.embeddings import Embeddings
from multiembed.encoder import Encoder
from multiembed.errors import (
    BackendError,
    CollectionNotFoundError,
    ConfigError,
    ModelNotFoundError,
    SchemaMismatchError,
)
from multiembed.identity import load_arguments, mismatches
from multiembed.milvus.client import (
    GuardedClient,
    close_client,
    is_lite,
    open_client,
    read_options,
    row_count,
)
from multiembed.milvus.results import AddReport
from multiembed.milvus.schema import (
    DAMAGED_HINT,
    DEFAULT_URI,
    TEXT_FIELD,
    CollectionInfo,
    check_backend,
    check_rows,
    fit_varchar,
    index_params_for,
    recorded_rows,
    rows_property,
    schema_for,
)
from multiembed.milvus.search import Searching
from multiembed.milvus.upsert import requests
from multiembed.milvus.versions import check_server, needed_features, server_index_params, server_version


class MilvusStore(Searching):
    """A collection of one encoder's vectors, in Milvus Lite (a local file) or a Milvus server.

    Open an existing collection without an encoder to get the encoder it was built with; create a
    new one by passing an encoder (or ``modality=`` and optionally ``model=`` and options). Without
    either nothing is created: a missing Milvus Lite database is an error. On Lite the store records
    the rows it stored; a collection holding fewer "looks damaged" (:class:`BackendError`) unless
    opened with ``accept_row_count=True``, which records the current count (see :attr:`row_shortfall`),
    or ``"repair"``, which opens it to store the missing items again and keeps the recorded count
    until the collection holds that many rows again.

    On a server (``uri`` a URL), a new collection is checked against the server's version first:
    what it lacks (sparse fields before 2.4, BM25 before 2.5) is refused in one line before anything
    is made. ``index_params`` are the dense index's build parameters; on a server the ones Milvus 2.3
    requires (``nlist``, HNSW's ``M``/``efConstruction``, IVF_PQ's ``m``) default to usual values.
    Reads on a server are Strong: a search sees everything stored before it.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str] = DEFAULT_URI,
        collection: str = "multiembed",
        encoder: Encoder | None = None,
        *,
        modality: str | None = None,
        model: str | None = None,
        hybrid: bool = False,
        index_type: str = "AUTOINDEX",
        index_params: dict[str, Any] | None = None,
        device: str = "auto",
        accept_row_count: bool | Literal["repair"] = False,
        **encoder_options: Any,
    ) -> None:
        uri = os.fspath(uri) if isinstance(uri, os.PathLike) else uri
        if not isinstance(uri, str) or not isinstance(collection, str):
            raise ConfigError("uri must be a path or URL and collection a name (str)")
        self.uri = uri
        self.collection = collection
        check_backend(uri, index_type=index_type)
        self._row_count: int | None = None  # rows the collection holds, kept on Milvus Lite only
        self._accept_row_count = accept_row_count
        #: when repairing: the count multiembed had recorded, kept until the rows are back
        self.rows_expected = 0
        #: why the collection looked damaged when it was opened with ``accept_row_count=True``
        self.row_shortfall: str | None = None
        #: whether this store made the collection (it did not exist before)
        self.created = False
        creates = encoder is not None or modality is not None  # else only open: create nothing
        self.client: GuardedClient | None = open_client(uri, create=creates)
        self._index_params = index_params
        try:
            self.info, self.encoder = self._open_or_create(
                encoder, modality, model, hybrid, index_type, device, encoder_options
            )
        except BaseException:
            self.close()
            raise

    def _open_or_create(
        self,
        encoder: Encoder | None,
        modality: str | None,
        model: str | None,
        hybrid: bool,
        index_type: str,
        device: str,
        options: dict[str, Any],
    ) -> tuple[CollectionInfo, Encoder]:
        if self._client.has_collection(self.collection):
            return self._reopen(encoder, modality, model, device, options)
        if encoder is None and modality is None:
            existing = sorted(self._client.list_collections())
            raise CollectionNotFoundError(self.collection, self.uri, existing)
        lite = is_lite(self.uri)
        server = None if lite else server_version(self._client)
        if server is not None:  # what the server lacks is refused before a model is loaded
            check_server(self.uri, *server, features=needed_features((), hybrid), index_type=index_type)
        if encoder is None:
            encoder = _load(str(modality), model, device, options)
        info = CollectionInfo.of(encoder, hybrid)
        schema = schema_for(encoder, hybrid=hybrid)  # refuses BM25 over documents that are not text
        params = self._index_params
        if server is not None:
            features = needed_features(encoder.outputs, hybrid)
            check_server(self.uri, *server, features=features, index_type=index_type)
            dense = [spec for spec in encoder.outputs if spec.kind == "dense"]
            params = server_index_params(index_type, dense[0].dim, params) if dense else params
        create_collection(
            self._client,
            self.collection,
            schema=schema,
            index_params=index_params_for(encoder, index_type, params=params, hybrid=hybrid),
            properties={**info.to_property(), **(rows_property(0) if lite else {})},
        )
        self.created = True
        self._row_count = 0 if lite else None
        return info, encoder

    def _reopen(
        self,
        encoder: Encoder | None,
        modality: str | None,
        model: str | None,
        device: str,
        options: dict[str, Any],
    ) -> tuple[CollectionInfo, Encoder]:
        description = self._client.describe_collection(self.collection)
        info = CollectionInfo.from_description(description)
        if info is None:
            raise SchemaMismatchError(
                f"collection {self.collection!r} was not created by multiembed (no encoder recorded)"
            )
        if is_lite(self.uri):
            self._check_rows(description)
        if encoder is None:
            if modality is not None and modality != info.modality:
                raise SchemaMismatchError(
                    f"collection {self.collection!r} holds {info.modality!r} vectors, not {modality!r}"
                )
            recorded_modality, recorded_model, recorded_options = load_arguments(info.config)
            try:
                encoder = _load(
                    recorded_modality, model or recorded_model, device, {**recorded_options, **options}
                )
            except ModelNotFoundError as error:
                moved = Path(recorded_model).is_absolute() and not Path(recorded_model).exists()
                if model is not None or not moved:
                    raise
                raise ModelNotFoundError(
                    f"collection {self.collection!r} was built with {recorded_model}, which cannot be loaded "
                    f"now ({error}); if its folder moved, pass the new place with --model / model= "
                    "(the weights must be the same)"
                ) from None
        problems = mismatches(info.config, encoder.config())
        if problems:
            raise SchemaMismatchError(f"collection {self.collection!r}: " + "; ".join(problems))
        # A collection reopened by a new process is "released" until loaded.
        self._client.load_collection(self.collection)
        return info, encoder

    def _check_rows(self, description: dict[str, Any]) -> None:
        """Refuse a Lite collection holding fewer rows than recorded (or accept it, when asked)."""
        self._row_count = self.count()
        self.row_shortfall = check_rows(self.collection, description, self._row_count)
        if self.row_shortfall and not self._accept_row_count:
            raise BackendError(f"{self.row_shortfall}; {DAMAGED_HINT}")
        if self.row_shortfall and self._accept_row_count == "repair":
            self.rows_expected = recorded_rows(description) or 0  # not lowered: the evidence stays
        elif self.row_shortfall:
            self._record_rows(0)

    def _record_rows(self, added: int) -> None:
        """Record the rows stored (Lite): only new items reach the upsert, so the count grows by ``added``."""
        if self._row_count is not None:
            self._row_count += added
            rows = rows_property(max(self._row_count, self.rows_expected))
            self._client.alter_collection_properties(self.collection, properties=rows)

    # ---- writing --------------------------------------------------------------------------
    def _stored(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        rows = self._client.query(
            self.collection, ids=list(keys), output_fields=["id"], **read_options(self.uri)
        )
        return {row["id"] for row in rows}

    def _storable(self, part: Embeddings) -> Embeddings:
        """Milvus refuses a sparse vector without a nonzero weight (and the whole request with it)."""
        empty = [
            row
            for spec in self.stored_outputs
            if spec.kind == "sparse"
            for row in range(len(part))
            if part.outputs[spec.name].indptr[row] == part.outputs[spec.name].indptr[row + 1]
        ]
        return part.without(sorted(set(empty)), "no nonzero weight in its sparse vector (nothing to store)")

    def _rows(self, part: Embeddings) -> list[dict[str, Any]]:
        rows = part.to_milvus_rows()
        for row in rows:
            row["source"] = fit_varchar(row["source"])
        if self.info.keeps_text:
            for row, text in zip(rows, part.raws, strict=True):
                row[TEXT_FIELD] = fit_varchar(text)
        return rows

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        """Upsert in requests of at most ~32 MB (Milvus refuses one over 64 MB)."""
        fields = [(self._field(spec), spec) for spec in self.stored_outputs]
        for request in requests(rows, fields):
            self._client.upsert(self.collection, request)

    def iter_add(
        self,
        inputs: Iterable[Any],
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
        total: int | None = None,
    ) -> Iterator[Embeddings]:
        """Encode and upsert window by window; each yielded part is already stored."""
        for part in self.encoder.iter_encode(
            inputs,
            batch_size=batch_size,
            progress=progress,
            skip_keys=self._stored,
            keep_raw=self.info.keeps_text,
            total=total,
        ):
            part = self._storable(part)
            self._upsert(self._rows(part))
            if len(part):
                self._record_rows(len(part))
            yield part

    def add(
        self, inputs: Iterable[Any], *, batch_size: int | None = None, progress: bool | None = None
    ) -> AddReport:
        """Add items not stored yet (by content); returns counts and the failures with reasons."""
        report = AddReport()
        for part in self.iter_add(inputs, batch_size=batch_size, progress=progress):
            report.added += len(part)
            report.skipped += len(part.skipped)
            report.errors.extend(part.errors)
        return report

    def drop(self) -> None:
        """Delete the collection and its rows (the store stays open, with nothing in it)."""
        self._client.drop_collection(self.collection)

    def count(self) -> int:
        """Rows stored in the collection."""
        return row_count(self._client, self.collection)

    def close(self) -> None:
        """Close the connection; a Milvus Lite file becomes free for other processes."""
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            close_client(client)

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_collection(client: GuardedClient, name: str, **arguments: Any) -> None:
    """Create, index and load a collection, or leave none behind.

    pymilvus creates the collection, then its indexes, then loads it: a server refusing the index
    (say, a parameter it requires) would leave a collection that can never be loaded.
    """
    try:
        client.create_collection(name, **arguments)
    except BaseException:
        try:
            if client.has_collection(name):
                client.drop_collection(name)
        finally:
            raise


def _load(modality: str, model: str | None, device: str, options: dict[str, Any]) -> Encoder:
    import multiembed

    return multiembed.load(modality, model, device=device, **options)
