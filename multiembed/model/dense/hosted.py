"""Hosted dense embedding functions with pymilvus.model's names, arguments and return types.

They run through the ``hosted`` modality (:mod:`multiembed.hosted`): no provider SDK, batching within
each provider's limits, retries on 429/5xx honouring ``Retry-After``, keys from the environment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multiembed.encoder import Encoder, Role

__all__ = ["OpenAIEmbeddingFunction"]


class HostedEmbeddingFunction:
    """The pymilvus.model surface over a hosted encoder: lists of float32 vectors, ``dim``.

    ``call_role`` is what ``__call__`` embeds texts as (pymilvus.model embeds them as documents,
    or with the task the constructor was given).
    """

    call_role: Role = "document"

    def __init__(self, provider_model: str, **options: Any) -> None:
        import multiembed

        self.encoder: Encoder = multiembed.load("hosted", provider_model, device="cpu", **options)

    def _encode(self, texts: list[str], role: Role) -> list[np.ndarray]:
        role_method = self.encoder.encode_queries if role == "query" else self.encoder.encode_documents
        vectors: list[np.ndarray] = role_method(list(texts))
        return vectors

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        return self._encode(queries, "query")

    def encode_documents(self, documents: list[str]) -> list[np.ndarray]:
        return self._encode(documents, "document")

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        return self._encode(texts, self.call_role)


class OpenAIEmbeddingFunction(HostedEmbeddingFunction):
    """pymilvus.model's ``OpenAIEmbeddingFunction``; ``base_url`` reaches any OpenAI-compatible server.

    Extra keyword arguments that pymilvus.model hands to the OpenAI client (``timeout``,
    ``max_retries``) are taken; others are sent with each request (e.g. ``user``).
    """

    def __init__(
        self,
        model_name: str = "text-embedding-ada-002",
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.model_name = model_name
        client_options = {key: kwargs.pop(key) for key in ("timeout", "max_retries") if key in kwargs}
        super().__init__(
            f"openai:{model_name}",
            api_key=api_key,
            base_url=base_url,
            dimensions=dimensions,
            request_options=kwargs or None,
            **client_options,
        )
