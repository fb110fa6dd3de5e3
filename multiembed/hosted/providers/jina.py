"""Jina AI's embeddings API.

Request ``POST {base_url}/embeddings`` (``https://api.jina.ai/v1``) with a bearer key and
``{"model", "input": [...], "task": "retrieval.query" | "retrieval.passage" | ..., "late_chunking"}``
plus ``dimensions`` (Matryoshka models) when asked for; answer ``{"data": [{"embedding", "index"}],
"usage"}`` (OpenAI's shape). Errors carry ``{"detail": ...}``. The key is read from
``JINAAI_API_KEY`` (pymilvus.model's name) or ``JINA_API_KEY``.
Limit: 512 inputs per request - the API refuses more for jina-embeddings-v4 ("Each input list can
contain at most 512 items", langgenius/dify-official-plugins#1997) and more than 2,048 for v3
("input length is larger than the largest allowed size 2048", refly-ai/refly#831); the smaller cap
is used for every model. With ``late_chunking`` the API embeds a request's inputs as one text, so
the vectors depend on how inputs are batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from multiembed.hosted.provider import Provider, Role, openai_style_vectors, register_provider


@register_provider
class Jina(Provider):
    name = "jina"
    title = "Jina AI"
    base_url = "https://api.jina.ai/v1"
    key_env = ("JINAAI_API_KEY", "JINA_API_KEY")
    default_model = "jina-embeddings-v3"
    # published model sizes (Jina's model cards; the Qdrant and LlamaIndex integration tables)
    dims = MappingProxyType(
        {
            "jina-embeddings-v4": 2048,
            "jina-embeddings-v3": 1024,
            "jina-clip-v2": 1024,
            "jina-embeddings-v2-base-en": 768,
            "jina-embeddings-v2-base-de": 768,
            "jina-embeddings-v2-base-es": 768,
            "jina-embeddings-v2-base-zh": 768,
            "jina-embeddings-v2-base-code": 768,
        }
    )
    max_batch = 512
    input_types = MappingProxyType({"query": "retrieval.query", "document": "retrieval.passage"})

    def endpoint(self, role: Role) -> str:
        return f"{self.url}/embeddings"

    def payload(self, texts: Sequence[str], role: Role) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "input": list(texts), "task": self.input_types[role]}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        return {**body, **self.options}

    def vectors(self, body: Any) -> list[list[float]]:
        return openai_style_vectors(body)
