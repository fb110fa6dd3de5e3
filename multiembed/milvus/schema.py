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
from typing import Any

from multiembed.embeddings import field_name
from multiembed.encoder import Encoder
from multiembed.errors import BackendError
from multiembed.identity import legacy_config
from multiembed.milvus.client import DEFAULT_URI, is_lite
from multiembed.outputs import OutputSpec

__all__ = ["DEFAULT_URI", "CollectionInfo", "check_backend", "index_params_for", "schema_for"]

VECTOR_FIELD = "vector"
TEXT_FIELD = "text"
SPARSE_FIELD = "sparse"  # filled by Milvus' built-in BM25 function from TEXT_FIELD
PROPERTY = "multiembed"
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

    @classmethod
    def of(cls, encoder: Encoder, hybrid: bool = False) -> CollectionInfo:
        fields = {spec.name: name for name, spec in stored_outputs(encoder.outputs)}
        return cls(encoder.config(), hybrid, fields)

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
        record = {"version": 2, "config": self.config, "hybrid": self.hybrid, "fields": self.fields}
        return {PROPERTY: json.dumps(record, sort_keys=True)}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> CollectionInfo | None:
        """The recorded identity, or None for a collection multiembed did not make."""
        raw = (description.get("properties") or {}).get(PROPERTY)
        if not raw:
            return None
        record = json.loads(raw)
        if "config" not in record:  # made before identities were saved: modality, model, dim, metric
            config = legacy_config(record["modality"], record["model"], int(record["dim"]), record["metric"])
            return cls(config, bool(record.get("hybrid")), {"dense": VECTOR_FIELD})
        return cls(record["config"], bool(record.get("hybrid")), dict(record.get("fields") or {}))


def schema_for(
    encoder: Encoder,
    extra_fields: Sequence[tuple[str, Any, dict[str, Any]]] = (),
    *,
    hybrid: bool = False,
) -> Any:
    """A schema for ``encoder``: id (sha256), one field per storable output, source, modality, model.

    ``extra_fields`` are ``(name, DataType, kwargs)``. ``hybrid`` adds a ``text`` field with an
    analyzer and a ``sparse`` field filled by Milvus' built-in BM25 function (text documents only).
    Dynamic fields are on, so rows may carry more.
    """
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.VARCHAR, max_length=64, is_primary=True)
    for name, spec in stored_outputs(encoder.outputs):
        if spec.kind == "sparse":
            schema.add_field(name, DataType.SPARSE_FLOAT_VECTOR)
        else:
            schema.add_field(name, DataType.FLOAT_VECTOR, dim=spec.dim)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("modality", DataType.VARCHAR, max_length=64)
    schema.add_field("model", DataType.VARCHAR, max_length=1024)
    for name, data_type, options in extra_fields:
        schema.add_field(name, data_type, **options)
    if hybrid:
        if not encoder.documents_are_text:
            raise BackendError(
                f"a BM25 (hybrid) collection keeps the documents' text; {encoder.modality} documents "
                "are not text"
            )
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
    """One index per stored output: ``index_type`` with the output's metric for dense, an inverted
    index with IP for sparse; plus the BM25 field of a hybrid collection."""
    from pymilvus import MilvusClient

    index_params = MilvusClient.prepare_index_params()
    for name, spec in stored_outputs(encoder.outputs):
        if spec.kind == "sparse":
            index_params.add_index(field_name=name, index_type=SPARSE_INDEX, metric_type=spec.metric)
        else:
            index_params.add_index(
                field_name=name, index_type=index_type.upper(), metric_type=spec.metric, params=params or {}
            )
    if hybrid:
        index_params.add_index(field_name=SPARSE_FIELD, index_type=SPARSE_INDEX, metric_type="BM25")
    return index_params
