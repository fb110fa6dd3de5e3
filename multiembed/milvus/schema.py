"""Schema, index and recorded identity of a collection, all derived from the encoder's outputs.

Each output Milvus can hold becomes a field: a dense output a FLOAT_VECTOR with its dim and metric,
a sparse one a SPARSE_FLOAT_VECTOR with an inverted index and IP. The first output is the field
``vector``, the others ``<name>_vector``. Multi-vector outputs (ColBERT) are written to files, not
to Milvus: Milvus Lite has no field type for them. The encoder's full identity goes into the
collection's properties, so reopening rebuilds exactly that encoder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from multiembed.embeddings import field_name
from multiembed.errors import BackendError, SchemaMismatchError
from multiembed.identity import legacy_config
from multiembed.milvus.client import DEFAULT_URI, is_lite
from multiembed.outputs import OutputSpec, sparse_row_dict

if TYPE_CHECKING:
    from multiembed.encoder import Encoder

__all__ = [
    "DAMAGED_HINT",
    "DEFAULT_URI",
    "CollectionInfo",
    "check_backend",
    "check_rows",
    "index_params_for",
    "index_params_of",
    "recorded_rows",
    "rows_property",
    "schema_for",
    "schema_of",
]

VECTOR_FIELD = "vector"
TEXT_FIELD = "text"
SPARSE_FIELD = "sparse"  # filled by Milvus' built-in BM25 function from TEXT_FIELD
PROPERTY = "multiembed"
#: the row count multiembed last left in a Milvus Lite collection (a property of its own: it is
#: rewritten after every stored window, and the identity in PROPERTY is not)
ROWS_PROPERTY = "multiembed.rows"
#: what Milvus Lite stores and indexes; the rest it rejects or silently serves by brute force
LITE_VECTOR_TYPES = frozenset({"FLOAT_VECTOR", "SPARSE_FLOAT_VECTOR"})
LITE_UNBUILT_INDEXES = frozenset({"DISKANN", "SCANN", "IVF_PQ"})
MAX_VARCHAR = 65_535
SPARSE_INDEX = "SPARSE_INVERTED_INDEX"


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


def fit_varchar(text: str, limit: int = MAX_VARCHAR) -> str:
    """Milvus counts VARCHAR length in bytes; cut at a character boundary under the limit."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def given_vector(query: Any) -> Any:
    """A query that already is a vector: a numeric 1-D array, a sparse dict or a one-row sparse matrix."""
    if isinstance(query, np.ndarray) and query.ndim == 1 and np.issubdtype(query.dtype, np.number):
        return query.astype(np.float32)
    if sp.issparse(query) and query.shape[0] == 1:
        return sparse_row_dict(sp.csr_matrix(query), 0)
    if isinstance(query, dict) and all(isinstance(key, int) for key in query):
        return {int(key): float(value) for key, value in query.items()}
    return None


def recorded_rows(description: dict[str, Any]) -> int | None:
    """The row count multiembed recorded in a collection's properties, or None if it recorded none."""
    raw = (description.get("properties") or {}).get(ROWS_PROPERTY)
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def rows_property(rows: int) -> dict[str, str]:
    return {ROWS_PROPERTY: str(rows)}


#: what to do about a collection that looks damaged (appended when it is refused)
DAMAGED_HINT = (
    "re-run `multiembed index` with its inputs to store the missing items again, or if rows were "
    "deleted on purpose, accept the current count with MilvusStore(uri, name, accept_row_count=True)"
)


def check_rows(name: str, description: dict[str, Any], reported: int) -> str | None:
    """Why a collection looks damaged (Milvus holds fewer rows than multiembed stored), or None.

    Milvus Lite silently falls back to the previous manifest when the current one is corrupt, and
    then answers from the older, smaller state; the recorded count is what gives that away.
    """
    recorded = recorded_rows(description)
    if recorded is None or reported >= recorded:
        return None
    return (
        f"collection {name!r} looks damaged: Milvus reports {reported} rows, multiembed last stored "
        f"{recorded}"
    )


def stored_outputs(outputs: Sequence[OutputSpec]) -> list[tuple[str, OutputSpec]]:
    """(field name, output) for every output Milvus can hold, the primary first."""
    stored = [
        (field_name(spec, index == 0), spec)
        for index, spec in enumerate(outputs)
        if spec.milvus_type is not None
    ]
    if not stored:
        kinds = ", ".join(f"{spec.name} ({spec.kind})" for spec in outputs)
        raise BackendError(f"none of this encoder's outputs ({kinds}) can be stored in Milvus; write a file")
    return stored


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection records about the encoder that made it (``Encoder.config()``) and its fields."""

    config: dict[str, Any]
    #: whether the collection also keeps the text with Milvus' built-in BM25 (text encoders)
    hybrid: bool = False
    #: output name -> the Milvus field that holds it
    fields: dict[str, str] = field(default_factory=dict)
    #: whether each row keeps its text (text documents), so search can show what it found
    keeps_text: bool = False

    @classmethod
    def of(cls, encoder: Encoder, hybrid: bool = False) -> CollectionInfo:
        fields = {spec.name: name for name, spec in stored_outputs(encoder.outputs)}
        return cls(encoder.config(), hybrid, fields, hybrid or encoder.documents_are_text)

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        return tuple(OutputSpec.from_description(item) for item in self.config.get("outputs", []))

    @property
    def modality(self) -> str:
        return str(self.config["modality"])

    @property
    def model(self) -> str:
        return str(self.config["model"])

    @property
    def dim(self) -> int:
        return self.outputs[0].dim

    @property
    def metric(self) -> str:
        return self.outputs[0].metric

    def to_property(self) -> dict[str, str]:
        record = {
            "version": 2,
            "config": self.config,
            "hybrid": self.hybrid,
            "fields": self.fields,
            "keeps_text": self.keeps_text,
        }
        return {PROPERTY: json.dumps(record, sort_keys=True)}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> CollectionInfo | None:
        """The recorded identity, or None for a collection multiembed did not make."""
        raw = (description.get("properties") or {}).get(PROPERTY)
        if not raw:
            return None
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError as error:
            raise SchemaMismatchError(f"the collection's multiembed record is damaged ({error})") from None
        hybrid = bool(record.get("hybrid"))
        # Whether rows carry their text is read off the schema itself: that is what inserts must match.
        keeps_text = any(item.get("name") == TEXT_FIELD for item in description.get("fields") or [])
        if "config" not in record:  # made before identities were saved: modality, model, dim, metric
            config = legacy_config(record["modality"], record["model"], int(record["dim"]), record["metric"])
            return cls(config, hybrid, {"dense": VECTOR_FIELD}, keeps_text)
        return cls(record["config"], hybrid, dict(record.get("fields") or {}), keeps_text)


def schema_for(
    encoder: Encoder,
    extra_fields: Sequence[tuple[str, Any, dict[str, Any]]] = (),
    *,
    hybrid: bool = False,
) -> Any:
    """A schema for ``encoder``: id (sha256), one field per storable output, source, modality, model.

    ``extra_fields`` are ``(name, DataType, kwargs)``. Text documents get a ``text`` field (the
    passage, shown by search); ``hybrid`` gives it an analyzer and adds a ``sparse`` field filled by
    Milvus' built-in BM25 function. Dynamic fields are on, so rows may carry more.
    """
    if hybrid and not encoder.documents_are_text:
        raise BackendError(
            f"a BM25 (hybrid) collection keeps the documents' text; {encoder.modality} documents are not text"
        )
    return _schema(encoder.outputs, encoder.documents_are_text, hybrid, extra_fields)


def schema_of(info: CollectionInfo) -> Any:
    """The schema :func:`schema_for` gives the encoder ``info`` records (no model is loaded)."""
    return _schema(info.outputs, info.keeps_text, info.hybrid)


def _schema(
    outputs: Sequence[OutputSpec],
    documents_are_text: bool,
    hybrid: bool,
    extra_fields: Sequence[tuple[str, Any, dict[str, Any]]] = (),
) -> Any:
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.VARCHAR, max_length=64, is_primary=True)
    for name, spec in stored_outputs(outputs):
        if spec.kind == "sparse":
            schema.add_field(name, DataType.SPARSE_FLOAT_VECTOR)
        else:
            schema.add_field(name, DataType.FLOAT_VECTOR, dim=spec.dim)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("modality", DataType.VARCHAR, max_length=64)
    schema.add_field("model", DataType.VARCHAR, max_length=1024)
    for name, data_type, options in extra_fields:
        schema.add_field(name, data_type, **options)
    if documents_are_text:
        if hybrid:  # BM25 reads it: every row must have it
            schema.add_field(TEXT_FIELD, DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True)
        else:  # shown by search; rows from Embeddings.to_milvus_rows() may leave it out
            schema.add_field(TEXT_FIELD, DataType.VARCHAR, max_length=MAX_VARCHAR, nullable=True)
    if hybrid:
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
    """One index per stored output: ``index_type`` with the output's metric for dense, an inverted
    index with IP for sparse; plus the BM25 field of a hybrid collection."""
    return index_params_of(encoder.outputs, index_type, params=params, hybrid=hybrid)


def index_params_of(
    outputs: Sequence[OutputSpec],
    index_type: str = "AUTOINDEX",
    *,
    params: dict[str, Any] | None = None,
    hybrid: bool = False,
) -> Any:
    """:func:`index_params_for` from the outputs themselves (e.g. those a collection records)."""
    from pymilvus import MilvusClient

    index_params = MilvusClient.prepare_index_params()
    for name, spec in stored_outputs(outputs):
        if spec.kind == "sparse":
            index_params.add_index(field_name=name, index_type=SPARSE_INDEX, metric_type=spec.metric)
        else:
            index_params.add_index(
                field_name=name, index_type=index_type.upper(), metric_type=spec.metric, params=params or {}
            )
    if hybrid:
        index_params.add_index(field_name=SPARSE_FIELD, index_type=SPARSE_INDEX, metric_type="BM25")
    return index_params
