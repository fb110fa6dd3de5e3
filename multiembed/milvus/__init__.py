"""Milvus wiring: schema and index from the encoder's outputs, and a store that indexes and searches.

``schema`` derives fields, indexes and the recorded identity from an encoder; ``client`` opens Milvus
Lite files and servers and turns every client failure into a :class:`BackendError`; ``store`` holds
:class:`MilvusStore`, which adds (idempotently, by content hash) and searches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiembed.errors import BackendError, InputError, MultiembedError, SchemaMismatchError
from multiembed.lazy import lazy_attributes
from multiembed.milvus.client import DEFAULT_URI, is_lite

if TYPE_CHECKING:
    from multiembed.milvus.results import AddReport, CollectionSummary, Hit, list_collections
    from multiembed.milvus.schema import (
        SPARSE_FIELD,
        TEXT_FIELD,
        VECTOR_FIELD,
        CollectionInfo,
        check_backend,
        index_params_for,
        schema_for,
        stored_outputs,
    )
    from multiembed.milvus.store import MilvusStore

#: where each public name lives; imported on first use (the CLI's light commands need few of them)
_LAZY = {
    **dict.fromkeys(
        ["AddReport", "CollectionSummary", "Hit", "list_collections"], "multiembed.milvus.results"
    ),
    **dict.fromkeys(
        [
            "SPARSE_FIELD",
            "TEXT_FIELD",
            "VECTOR_FIELD",
            "CollectionInfo",
            "check_backend",
            "index_params_for",
            "schema_for",
            "stored_outputs",
        ],
        "multiembed.milvus.schema",
    ),
    "MilvusStore": "multiembed.milvus.store",
}


__getattr__ = lazy_attributes("multiembed.milvus", _LAZY)


__all__ = [
    "DEFAULT_URI",
    "SPARSE_FIELD",
    "TEXT_FIELD",
    "VECTOR_FIELD",
    "AddReport",
    "BackendError",
    "CollectionInfo",
    "CollectionSummary",
    "Hit",
    "InputError",
    "MilvusStore",
    "MultiembedError",
    "SchemaMismatchError",
    "check_backend",
    "index_params_for",
    "is_lite",
    "list_collections",
    "schema_for",
    "stored_outputs",
]
