"""Nomic Atlas's hosted text embeddings (nomic-embed-text).

Request ``POST {base_url}/v1/embedding/text`` (``https://api-atlas.nomic.ai``) with a bearer key and
``{"model", "texts": [...], "task_type": "search_query" | "search_document" | "classification" |
"clustering"}`` plus ``dimensionality`` (Matryoshka, v1.5) when asked for and ``long_text_mode``
("truncate" | "mean", a request option); answer ``{"embeddings": [[...], ...], "usage", "model"}``
in input order (Nomic's API reference, https://docs.nomic.ai/reference/api/embed-text-v-1-embedding-
text-post). Errors carry ``{"detail": ...}``.
Limit: 50 texts per request, the chunk size Nomic's own client sends (``MAX_TEXT_REQUEST_SIZE`` in
nomic/embed.py); the API reference publishes no count.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from multiembed.hosted.provider import Provider, Role, register_provider


@register_provider
class Nomic(Provider):
    name = "nomic"
    title = "Nomic"
    base_url = "https://api-atlas.nomic.ai"
    key_env = ("NOMIC_API_KEY",)
    default_model = "nomic-embed-text-v1.5"
    dims = MappingProxyType({"nomic-embed-text-v1.5": 768, "nomic-embed-text-v1": 768})
    max_batch = 50
    input_types = MappingProxyType({"query": "search_query", "document": "search_document"})

    def endpoint(self, role: Role) -> str:
        return f"{self.url}/v1/embedding/text"

    def payload(self, texts: Sequence[str], role: Role) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "texts": list(texts),
            "task_type": self.input_types[role],
        }
        if self.dimensions is not None:
            body["dimensionality"] = self.dimensions
        return {**body, **self.options}

    def vectors(self, body: Any) -> list[list[float]]:
        rows: list[list[float]] = body["embeddings"]
        return rows
