"""A drop-in for ``pymilvus.model``: port code by changing ``from pymilvus import model`` to
``from multiembed import model``.

Same classes, constructor arguments, methods and return types, with equal vectors, and nothing
downloaded or installed at run time. Each function is also a registered multiembed modality, so the
CLI and :class:`multiembed.MilvusStore` use it too (BM25: ``modality="bm25"``, ``model=`` the
parameters file).

- ``model.DefaultEmbeddingFunction`` (all-MiniLM-L6-v2, packaged: no download) and
  ``model.dense.SentenceTransformerEmbeddingFunction``.
- ``model.sparse``: ``BM25EmbeddingFunction``, ``build_default_analyzer``.
- ``model.reranker``: ``CrossEncoderRerankFunction`` (results ``text``, ``score``, ``index``).
"""

from multiembed.model import dense, reranker, sparse
from multiembed.model.dense import DefaultEmbeddingFunction

__all__ = ["DefaultEmbeddingFunction", "dense", "reranker", "sparse"]
