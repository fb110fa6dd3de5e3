"""Sparse embedding functions, as in ``pymilvus.model.sparse``: ``BM25EmbeddingFunction``,
``SpladeEmbeddingFunction``.

``build_default_analyzer(language="en")`` gives the offline analyzer BM25 uses by default.
"""

from multiembed.model.exports import lazy_exports

_WHERE = {
    "Analyzer": "bm25",
    "BM25EmbeddingFunction": "bm25",
    "build_analyzer_from_yaml": "bm25",
    "build_default_analyzer": "bm25",
    "SpladeEmbeddingFunction": "splade",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
