"""MilvusStore: a collection of one encoder's vectors, added idempotently and searched by any output.

Keys are content hashes: upserting is idempotent, already-stored items are skipped before the
model runs, and a killed run is finished by running it again. The collection records the encoder's
identity; reopening rebuilds exactly that encoder, and another one is refused with the differing
keys named.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from multiembed.embeddings import Embeddings
from multiembed.encoder import Encoder, Role
from multiembed.errors import BackendError, ConfigError, InputError, MultiembedError, SchemaMismatchError
from multiembed.identity import load_arguments, mismatches
from multiembed.milvus.client import GuardedClient, close_client, is_lite, open_client
from multiembed.milvus.results import AddReport, Hit
from multiembed.milvus.schema import (
    DAMAGED_HINT,
    DEFAULT_URI,
    SPARSE_FIELD,
    TEXT_FIELD,
    CollectionInfo,
    check_backend,
    check_rows,
    fit_varchar,
    given_vector,
    index_params_for,
    rows_property,
    schema_for,
)
from multiembed.outputs import OutputSpec, row_bytes, sparse_row_dict

MAX_REQUEST_BYTES = 32 * 1024 * 1024
_ROW_OVERHEAD = 512


class MilvusStore:
    """A collection of one encoder's vectors, in Milvus Lite (a local file) or a Milvus server.

    Open an existing collection without an encoder to get the encoder it was built with; create a
    new one by passing an encoder (or ``modality=`` and optionally ``model=`` and options). Without
    either nothing is created: a missing Milvus Lite database is an error. On Lite the store records
    the rows it stored; a collection holding fewer "looks damaged" (:class:`BackendError`) unless
    opened with ``accept_row_count=True``, which records the current count (see :attr:`row_shortfall`).
    """

    def __init__(
        self,
        uri: str = DEFAULT_URI,
        collection: str = "multiembed",
        encoder: Encoder | None = None,
        *,
        modality: str | None = None,
        model: str | None = None,
        hybrid: bool = False,
        index_type: str = "AUTOINDEX",
        device: str = "auto",
        accept_row_count: bool = False,
        **encoder_options: Any,
    ) -> None:
        self.uri = uri
        self.collection = collection
        check_backend(uri, index_type=index_type)
        self._row_count: int | None = None  # rows the collection holds, kept on Milvus Lite only
        self._accept_row_count = accept_row_count
        #: why the collection looked damaged when it was opened with ``accept_row_count=True``
        self.row_shortfall: str | None = None
        creates = encoder is not None or modality is not None  # else only open: create nothing
        self.client: GuardedClient | None = open_client(uri, create=creates)
        try:
            self.info, self.encoder = self._open_or_create(
                encoder, modality, model, hybrid, index_type, device, encoder_options
            )
        except BaseException:
            self.close()
            raise

    @property
    def _client(self) -> GuardedClient:
        if self.client is None:
            raise BackendError(f"the store for {self.uri} is closed")
        return self.client

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
        if encoder is None:
            if modality is None:
                raise MultiembedError(
                    f"collection {self.collection!r} does not exist in {self.uri}; pass an encoder or a "
                    "modality to create it"
                )
            encoder = _load(modality, model, device, options)
        info = CollectionInfo.of(encoder, hybrid)
        lite = is_lite(self.uri)
        self._client.create_collection(
            self.collection,
            schema=schema_for(encoder, hybrid=hybrid),
            index_params=index_params_for(encoder, index_type, hybrid=hybrid),
            properties={**info.to_property(), **(rows_property(0) if lite else {})},
        )
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
            encoder = _load(
                recorded_modality, model or recorded_model, device, {**recorded_options, **options}
            )
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
        if self.row_shortfall:
            self._record_rows(0)

    def _record_rows(self, added: int) -> None:
        """Record the rows stored (Lite): only new items reach the upsert, so the count grows by ``added``."""
        if self._row_count is not None:
            self._row_count += added
            rows = rows_property(self._row_count)
            self._client.alter_collection_properties(self.collection, properties=rows)

    def _field(self, spec: OutputSpec) -> str:
        return self.info.fields[spec.name]

    @property
    def stored_outputs(self) -> list[OutputSpec]:
        """The encoder's outputs this collection holds (dense and sparse; multi-vector ones are not)."""
        return [spec for spec in self.encoder.outputs if spec.name in self.info.fields]

    # ---- writing --------------------------------------------------------------------------
    def _stored(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        rows = self._client.query(self.collection, ids=list(keys), output_fields=["id"])
        return {row["id"] for row in rows}

    def _rows(self, part: Embeddings) -> list[dict[str, Any]]:
        rows = part.to_milvus_rows()
        for row in rows:
            row["source"] = fit_varchar(row["source"])
        if self.info.hybrid:
            for row, text in zip(rows, part.raws, strict=True):
                row[TEXT_FIELD] = fit_varchar(text)
        return rows

    def _row_size(self, row: dict[str, Any]) -> int:
        size = _ROW_OVERHEAD + 4 * len(row.get(TEXT_FIELD, "")) + len(row["source"])
        return size + sum(row_bytes(spec, row[self._field(spec)]) for spec in self.stored_outputs)

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        """Upsert in requests of at most ~32 MB (Milvus caps one request at 64 MB)."""
        request: list[dict[str, Any]] = []
        size = 0
        for row in rows:
            row_size = self._row_size(row)
            if request and size + row_size > MAX_REQUEST_BYTES:
                self._client.upsert(self.collection, request)
                request, size = [], 0
            request.append(row)
            size += row_size
        if request:
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
            keep_raw=self.info.hybrid,
            total=total,
        ):
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

    # ---- reading --------------------------------------------------------------------------
    def _query_role(self, query: Any) -> Role:
        if isinstance(query, str) and self.encoder.accepts_text_queries:
            # For CLIP a path to an existing file is query-by-example; for text a string is text.
            return "document" if not self.encoder.documents_are_text and Path(query).is_file() else "query"
        return "document"

    def _output(self, name: str | None) -> OutputSpec:
        stored = self.stored_outputs
        if name is None:
            return stored[0]
        for spec in stored:
            if name in (spec.name, self._field(spec)):
                return spec
        choices = ", ".join(spec.name for spec in stored)
        raise ConfigError(f"collection {self.collection!r} has no output {name!r}; it has {choices}")

    def query_vectors(self, query: Any) -> dict[str, Any]:
        """The value to search each stored output with: given directly, or the encoder's for the query.

        A given vector is a 1-D array (dense) or a ``{dimension: weight}`` dict / one-row sparse matrix.
        """
        given = given_vector(query)
        if given is not None:
            kind = "sparse" if isinstance(given, dict) else "dense"
            matching = [spec for spec in self.stored_outputs if spec.kind == kind]
            if not matching:
                raise SchemaMismatchError(f"collection {self.collection!r} has no {kind} output to search")
            spec = matching[0]
            if kind == "dense" and given.shape[0] != spec.dim:
                raise SchemaMismatchError(
                    f"query vector has {given.shape[0]} dims, the {spec.name!r} output has {spec.dim}"
                )
            return {spec.name: given}
        result = self.encoder.encode([query], role=self._query_role(query), progress=False)
        if result.errors:
            raise InputError(result.errors[0].reason, "query")
        values: dict[str, Any] = {}
        for spec in self.stored_outputs:
            column = result.outputs[spec.name]
            values[spec.name] = sparse_row_dict(column, 0) if spec.kind == "sparse" else column[0]
        return values

    def query_vector(self, query: Any) -> Any:
        """The primary output's query value (see :meth:`query_vectors`)."""
        values = self.query_vectors(query)
        return values.get(self.stored_outputs[0].name, next(iter(values.values())))

    def search(
        self,
        query: Any,
        limit: int = 10,
        filter: str | None = None,
        *,
        output: str | None = None,
        hybrid: bool = False,
        weights: Sequence[float] | None = None,
        output_fields: Sequence[str] = ("source", "modality", "model"),
    ) -> list[Hit]:
        """Nearest items to ``query`` (text, a file path, a raw item or a vector), best first.

        ``output`` picks which of the encoder's outputs to search (default: the first). ``hybrid``
        fuses every stored output and, in a BM25 collection, Milvus' BM25 over the stored texts, by
        reciprocal rank fusion or by ``weights`` (one per searched field, in that order).
        """
        if not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be an integer >= 1, got {limit!r}")
        values = self.query_vectors(query)
        fields = list(output_fields)
        if hybrid:
            return self._hybrid_search(query, values, limit, filter, weights, fields)
        spec = (
            self._output(output)
            if output is not None
            else next(spec for spec in self.stored_outputs if spec.name in values)
        )
        if spec.name not in values:
            raise SchemaMismatchError(f"the query gives no {spec.name!r} vector")
        value = values[spec.name]
        if spec.kind == "sparse" and not value:
            return []  # nothing of the query is in the vocabulary: no item can score
        results = self._client.search(
            self.collection,
            data=[value],
            anns_field=self._field(spec),
            limit=limit,
            filter=filter or "",
            output_fields=fields,
            search_params={"metric_type": spec.metric},
        )
        return [Hit.of(raw, spec.metric.lower()) for raw in results[0]]

    def _hybrid_search(
        self,
        query: Any,
        values: dict[str, Any],
        limit: int,
        filter: str | None,
        weights: Sequence[float] | None,
        fields: list[str],
    ) -> list[Hit]:
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        requests = [
            AnnSearchRequest(
                data=[values[spec.name]],
                anns_field=self._field(spec),
                param={"metric_type": spec.metric},
                limit=limit,
                expr=filter or None,
            )
            for spec in self.stored_outputs
            if spec.name in values and not (spec.kind == "sparse" and not values[spec.name])
        ]
        if self.info.hybrid:
            if not isinstance(query, str):
                raise InputError("hybrid search with BM25 needs a text query", "query")
            requests.append(
                AnnSearchRequest(
                    data=[query], anns_field=SPARSE_FIELD, param={}, limit=limit, expr=filter or None
                )
            )
        if len(requests) < 2:
            raise BackendError(
                f"collection {self.collection!r} has one vector field for this query, nothing to fuse; "
                "hybrid search needs a collection built with BM25 (hybrid) or an encoder with several outputs"
            )
        if weights is not None and len(weights) != len(requests):
            raise ConfigError(
                f"weights: give {len(requests)} numbers (one per searched field), got {len(weights)}"
            )
        ranker = WeightedRanker(*weights) if weights is not None else RRFRanker(60)
        results = self._client.hybrid_search(
            self.collection, reqs=requests, ranker=ranker, limit=limit, output_fields=fields
        )
        kind = "weighted" if weights is not None else "rrf"
        return [Hit.of(raw, kind) for raw in results[0]]

    def count(self) -> int:
        """Rows stored in the collection."""
        return int(self._client.get_collection_stats(self.collection)["row_count"])

    def close(self) -> None:
        """Close the connection; a Milvus Lite file becomes free for other processes."""
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            close_client(client)

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _load(modality: str, model: str | None, device: str, options: dict[str, Any]) -> Encoder:
    import multiembed

    return multiembed.load(modality, model, device=device, **options)
