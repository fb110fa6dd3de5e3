"""BM25: ``BM25EmbeddingFunction`` and its analyzers, as in ``pymilvus.model.sparse.bm25``."""

from multiembed.model.sparse.bm25.bm25 import BM25EmbeddingFunction
from multiembed.model.sparse.bm25.tokenizers import (
    Analyzer,
    build_analyzer,
    build_analyzer_from_yaml,
    build_default_analyzer,
)

__all__ = [
    "Analyzer",
    "BM25EmbeddingFunction",
    "build_analyzer",
    "build_analyzer_from_yaml",
    "build_default_analyzer",
]
