"""Milvus wiring: schema and index from the encoder, and a store that indexes and searches.

The collection records which encoder made it (modality, model, dim, metric) in its properties, so
reopening it rebuilds the same encoder, and a mismatched one fails loudly instead of returning
garbage. Keys are content hashes: upserting is idempotent, already-stored items are skipped before
the model runs, and a killed run is finished by running it again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiembed.embeddings import Embeddings, ItemError
from multiembed.encoder import Encoder, Role
from multiembed.errors import BackendError, InputError, MultiembedError, SchemaMismatchError

DEFAULT_URI = "./multiembed.db"
VECTOR_FIELD = "vector"
TEXT_FIELD = "text"
SPARSE_FIELD = "sparse"
PROPERTY = "multiembed"
#: what Milvus Lite stores and indexes; the rest it rejects or silently serves by brute force
LITE_VECTOR_TYPES = frozenset({"FLOAT_VECTOR", "SPARSE_FLOAT_VECTOR"})
LITE_UNBUILT_INDEXES = frozenset({"DISKANN", "SCANN", "IVF_PQ"})
MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_VARCHAR = 65_535


def is_lite(uri: str) -> bool:
    """A local file path means embedded Milvus Lite; a URL means a Milvus server."""
    return "://" not in uri


def check_backend(uri: str, *, vector_type: str = "FLOAT_VECTOR", index_type: str = "AUTOINDEX") -> None:
    """Refuse on Milvus Lite what it cannot do, instead of letting it fail later or degrade silently."""
    if not is_lite(uri):
        return
    if vector_type.upper() not in LITE_VECTOR_TYPES:
        raise BackendError(
            f"Milvus Lite ({uri}) stores only FLOAT_VECTOR and SPARSE_FLOAT_VECTOR, not {vector_type}; "
            "use a Milvus server (--uri http://host:19530) for other vector types"
        )
    if index_type.upper() in LITE_UNBUILT_INDEXES:
        raise BackendError(
            f"Milvus Lite ({uri}) accepts {index_type} but never builds it (it would search by brute "
            "force); use AUTOINDEX, HNSW, IVF_FLAT or FLAT, or a Milvus server"
        )


@dataclass(frozen=True)
class CollectionInfo:
    """The encoder identity a collection was built with, stored in its properties."""

    modality: str
    model: str
    dim: int
    metric: str
    hybrid: bool = False

    @classmethod
    def of(cls, encoder: Encoder, hybrid: bool = False) -> CollectionInfo:
        return cls(encoder.modality, encoder.model_id, encoder.dim, encoder.metric, hybrid)

    def to_property(self) -> dict[str, str]:
        return {PROPERTY: json.dumps(asdict(self), sort_keys=True)}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> CollectionInfo | None:
        raw = (description.get("properties") or {}).get(PROPERTY)
        return cls(**json.loads(raw)) if raw else None

    def mismatches(self, other: CollectionInfo) -> list[str]:
        return [
            f"{name}: collection has {getattr(self, name)!r}, encoder has {getattr(other, name)!r}"
            for name in ("modality", "model", "dim", "metric")
            if getattr(self, name) != getattr(other, name)
        ]


def schema_for(
    encoder: Encoder,
    extra_fields: Sequence[tuple[str, Any, dict[str, Any]]] = (),
    *,
    vector_type: str = "FLOAT_VECTOR",
    hybrid: bool = False,
) -> Any:
    """A schema for ``encoder``'s vectors: id (sha256), vector, source, modality, model, dynamic fields.

    ``extra_fields`` are ``(name, DataType, kwargs)``. ``hybrid`` adds a ``text`` field with an
    analyzer and a ``sparse`` field filled by Milvus' built-in BM25 function (text encoders only).
    """
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.VARCHAR, max_length=64, is_primary=True)
    if vector_type.upper() == "SPARSE_FLOAT_VECTOR":
        schema.add_field(VECTOR_FIELD, DataType.SPARSE_FLOAT_VECTOR)
    else:
        schema.add_field(VECTOR_FIELD, getattr(DataType, vector_type.upper()), dim=encoder.dim)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("modality", DataType.VARCHAR, max_length=64)
    schema.add_field("model", DataType.VARCHAR, max_length=1024)
    for name, data_type, options in extra_fields:
        schema.add_field(name, data_type, **options)
    if hybrid:
        if not encoder.accepts_text_queries or encoder.modality != "text":
            raise BackendError("hybrid (dense + BM25) collections need a text encoder")
        schema.add_field(TEXT_FIELD, DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True)
        schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=[TEXT_FIELD],
                output_field_names=[SPARSE_FIELD],
            )
        )
    return schema


def index_params_for(
    encoder: Encoder,
    index_type: str = "AUTOINDEX",
    *,
    params: dict[str, Any] | None = None,
    hybrid: bool = False,
) -> Any:
    """Index parameters matching the encoder's metric (and the BM25 field of a hybrid collection)."""
    from pymilvus import MilvusClient

    index_params = MilvusClient.prepare_index_params()
    index_params.add_index(
        field_name=VECTOR_FIELD,
        index_type=index_type.upper(),
        metric_type=encoder.metric,
        params=params or {},
    )
    if hybrid:
        index_params.add_index(
            field_name=SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25"
        )
    return index_params


@dataclass(frozen=True)
class Hit:
    """One search result: the item's id, its similarity score, where it came from, other fields."""

    id: str
    score: float
    source: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class AddReport:
    """What an ``add`` run did: new rows, items already stored, items that failed and why."""

    added: int = 0
    skipped: int = 0
    errors: list[ItemError] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.errors)


def _fit_varchar(text: str, limit: int = MAX_VARCHAR) -> str:
    """Milvus counts VARCHAR length in bytes; cut at a character boundary under the limit."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


#: Milvus Lite files this process has open, with how many clients use each.
_LITE_USERS: Counter[str] = Counter()


def _open_client(uri: str) -> Any:
    from pymilvus import MilvusClient

    if is_lite(uri):
        path = Path(uri).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = str(path)
    try:
        client = MilvusClient(uri)
    except Exception as error:
        if is_lite(uri):
            raise BackendError(
                f"cannot open Milvus Lite database {uri}: another process is using it (Milvus Lite "
                f"allows one process per file) or the file is damaged ({error})"
            ) from None
        raise BackendError(f"cannot connect to Milvus at {uri} ({error})") from None
    if is_lite(uri):
        _LITE_USERS[uri] += 1
    return client


def _close_client(client: Any, uri: str) -> None:
    """Close, and on Milvus Lite free the file for other processes once this process is done with it.

    Milvus Lite keeps an in-process server (and the file lock) until exit unless told otherwise.
    """
    client.close()
    if not is_lite(uri):
        return
    path = str(Path(uri).expanduser().resolve())
    _LITE_USERS[path] -= 1
    if _LITE_USERS[path] <= 0:
        del _LITE_USERS[path]
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)


class MilvusStore:
    """A collection of one encoder's vectors, in Milvus Lite (a local file) or a Milvus server.

    Open an existing collection without an encoder to get the encoder it was built with; create a
    new one by passing an encoder (or ``modality=`` and optionally ``model=``).
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
        **encoder_options: Any,
    ) -> None:
        self.uri = uri
        self.collection = collection
        check_backend(uri, index_type=index_type)
        self.client = _open_client(uri)
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
        import multiembed

        if self.client.has_collection(self.collection):
            info = CollectionInfo.from_description(self.client.describe_collection(self.collection))
            if info is None:
                raise SchemaMismatchError(
                    f"collection {self.collection!r} was not created by multiembed (no encoder recorded)"
                )
            if encoder is None:
                if modality is not None and modality != info.modality:
                    raise SchemaMismatchError(
                        f"collection {self.collection!r} holds {info.modality!r} vectors, not {modality!r}"
                    )
                encoder = multiembed.load(info.modality, model or info.model, device=device, **options)
            problems = info.mismatches(CollectionInfo.of(encoder))
            if problems:
                raise SchemaMismatchError(f"collection {self.collection!r}: " + "; ".join(problems))
            # A collection reopened by a new process is "released" until loaded.
            self.client.load_collection(self.collection)
            return info, encoder
        if encoder is None:
            if modality is None:
                raise MultiembedError(
                    f"collection {self.collection!r} does not exist in {self.uri}; pass an encoder or a "
                    "modality to create it"
                )
            encoder = multiembed.load(modality, model, device=device, **options)
        info = CollectionInfo.of(encoder, hybrid)
        self.client.create_collection(
            self.collection,
            schema=schema_for(encoder, hybrid=hybrid),
            index_params=index_params_for(encoder, index_type, hybrid=hybrid),
            properties=info.to_property(),
        )
        return info, encoder

    # ---- writing --------------------------------------------------------------------------
    def _stored(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        rows = self.client.query(self.collection, ids=list(keys), output_fields=["id"])
        return {row["id"] for row in rows}

    def _rows(self, part: Embeddings) -> list[dict[str, Any]]:
        rows = part.to_milvus_rows(VECTOR_FIELD)
        for row in rows:
            row["source"] = _fit_varchar(row["source"])
        if self.info.hybrid:
            for row, text in zip(rows, part.raws, strict=True):
                row[TEXT_FIELD] = _fit_varchar(text)
        return rows

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        """Upsert in requests of at most ~32 MB (Milvus caps one request at 64 MB)."""
        if not rows:
            return
        row_bytes = self.info.dim * 4 + 512 + (len(rows[0].get(TEXT_FIELD, "")) * 4)
        per_request = max(1, MAX_REQUEST_BYTES // row_bytes)
        for start in range(0, len(rows), per_request):
            self.client.upsert(self.collection, rows[start : start + per_request])

    def iter_add(
        self, inputs: Iterable[Any], *, batch_size: int | None = None, progress: bool | None = None
    ) -> Iterator[Embeddings]:
        """Encode and upsert window by window; each yielded part is already stored."""
        for part in self.encoder.iter_encode(
            inputs,
            batch_size=batch_size,
            progress=progress,
            skip_keys=self._stored,
            keep_raw=self.info.hybrid,
        ):
            self._upsert(self._rows(part))
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
            return "document" if self.encoder.modality != "text" and Path(query).is_file() else "query"
        return "document"

    def query_vector(self, query: Any) -> np.ndarray:
        """The vector to search with: a given vector, or the encoder's vector for the query."""
        if isinstance(query, np.ndarray) and query.ndim == 1 and np.issubdtype(query.dtype, np.number):
            if query.shape[0] != self.info.dim:
                raise SchemaMismatchError(
                    f"query vector has {query.shape[0]} dims, collection has {self.info.dim}"
                )
            return query.astype(np.float32)
        result = self.encoder.encode([query], role=self._query_role(query), progress=False)
        if result.errors:
            raise InputError(result.errors[0].reason, "query")
        return result.vectors[0]

    def search(
        self,
        query: Any,
        limit: int = 10,
        filter: str | None = None,
        *,
        hybrid: bool = False,
        weights: tuple[float, float] | None = None,
        output_fields: Sequence[str] = ("source", "modality", "model"),
    ) -> list[Hit]:
        """Nearest items to ``query`` (text, a file path, a raw item or a vector), best first.

        ``hybrid=True`` (hybrid text collections) fuses the dense search with BM25 over the stored
        texts, by reciprocal rank fusion, or by ``weights=(dense, bm25)``.
        """
        vector = self.query_vector(query)
        fields = list(output_fields)
        if hybrid:
            results = self._hybrid_search(query, vector, limit, filter, weights, fields)
        else:
            results = self.client.search(
                self.collection,
                data=[vector],
                anns_field=VECTOR_FIELD,
                limit=limit,
                filter=filter or "",
                output_fields=fields,
            )
        return [self._hit(raw) for raw in results[0]]

    def _hybrid_search(
        self,
        query: Any,
        vector: np.ndarray,
        limit: int,
        filter: str | None,
        weights: tuple[float, float] | None,
        fields: list[str],
    ) -> Any:
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        if not self.info.hybrid:
            raise BackendError(
                f"collection {self.collection!r} has no BM25 field; create it with hybrid=True"
            )
        if not isinstance(query, str):
            raise InputError("hybrid search needs a text query", "query")
        requests = [
            AnnSearchRequest(
                data=[vector], anns_field=VECTOR_FIELD, param={}, limit=limit, expr=filter or None
            ),
            AnnSearchRequest(
                data=[query], anns_field=SPARSE_FIELD, param={}, limit=limit, expr=filter or None
            ),
        ]
        ranker = WeightedRanker(*weights) if weights else RRFRanker(60)
        return self.client.hybrid_search(
            self.collection, reqs=requests, ranker=ranker, limit=limit, output_fields=fields
        )

    @staticmethod
    def _hit(raw: dict[str, Any]) -> Hit:
        entity = dict(raw.get("entity") or {})
        return Hit(
            id=str(raw["id"]),
            score=float(raw["distance"]),
            source=str(entity.pop("source", "")),
            fields=entity,
        )

    def count(self) -> int:
        """Rows stored in the collection."""
        return int(self.client.get_collection_stats(self.collection)["row_count"])

    def close(self) -> None:
        """Close the connection; a Milvus Lite file becomes free for other processes."""
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            _close_client(client, self.uri)

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class CollectionSummary:
    name: str
    rows: int
    info: CollectionInfo | None


def list_collections(uri: str = DEFAULT_URI) -> list[CollectionSummary]:
    """Every collection at ``uri`` with its row count and, for multiembed ones, the encoder."""
    client = _open_client(uri)
    try:
        return [
            CollectionSummary(
                name,
                int(client.get_collection_stats(name)["row_count"]),
                CollectionInfo.from_description(client.describe_collection(name)),
            )
            for name in sorted(client.list_collections())
        ]
    finally:
        _close_client(client, uri)
