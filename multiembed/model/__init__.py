"""A drop-in for ``pymilvus.model``: port code by changing ``from pymilvus import model`` to
``from multiembed import model``.

Same classes, constructor arguments, methods and return types, with equal vectors, and nothing
downloaded or installed at run time. Each local function is also a registered multiembed modality,
so the CLI and :class:`multiembed.MilvusStore` use it too. Classes are imported on first use, so
reaching one does not load every backend.

- ``model.DefaultEmbeddingFunction``: all-MiniLM-L6-v2, packaged (no download).
- ``model.dense``: sentence-transformers, Model2Vec, Instructor, Nomic, and hosted APIs (OpenAI and
  any OpenAI-compatible server, Voyage, Jina, Cohere, Mistral, Gemini, TEI).
- ``model.sparse``: BM25 (offline analyzers) and SPLADE.
- ``model.hybrid``: BGE-M3 (dense + sparse + ColBERT) and mGTE (dense + sparse).
- ``model.reranker``: cross-encoders, BGE, and hosted rerankers; results ``text``, ``score``, ``index``.
"""

from typing import TYPE_CHECKING, Any

from multiembed.model import dense, hybrid, reranker, sparse

__all__ = ["DefaultEmbeddingFunction", "dense", "hybrid", "reranker", "sparse"]


def __getattr__(name: str) -> Any:
    if name == "DefaultEmbeddingFunction":
        return dense.DefaultEmbeddingFunction
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from multiembed.model.dense.sentence_transformer import DefaultEmbeddingFunction
