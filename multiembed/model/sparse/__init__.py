"""Sparse embedding functions, as in ``pymilvus.model.sparse``: ``BM25EmbeddingFunction``.

``build_default_analyzer(language="en")`` gives the offline analyzer BM25 uses by default.
"""

from multiembed.model.sparse.bm25 import (
    Analyzer,
    BM25EmbeddingFunction,
    build_analyzer_from_yaml,
    build_default_analyzer,
)

__all__ = [
    "Analyzer",
    "BM25EmbeddingFunction",
    "build_analyzer_from_yaml",
    "build_default_analyzer",
]
