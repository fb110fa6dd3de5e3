"""Cohere's Embed API (v2).

Request ``POST {base_url}/embed`` (``https://api.cohere.com/v2``) with a bearer key and
``{"model", "texts": [...], "input_type": "search_query" | "search_document" | ...,
"embedding_types": ["float"]}``, plus ``output_dimension`` (embed-v4.0) when asked for and
``truncate`` ("NONE" | "START" | "END", a request option); answer ``{"id", "embeddings": {"float":
[[...], ...]}, "texts", "meta"}`` in input order. Errors carry ``{"message": ...}``. The key is read
from ``CO_API_KEY`` (Cohere's SDK) or ``COHERE_API_KEY``.
Limit: 96 texts per request ("Maximum number of texts per call is 96", Cohere's Embed API v2
reference, https://docs.cohere.com/reference/embed).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from multiembed.hosted.provider import Provider, Role, register_provider


@register_provider
class Cohere(Provider):
    name = "cohere"
    title = "Cohere"
    base_url = "https://api.cohere.com/v2"
    key_env = ("CO_API_KEY", "COHERE_API_KEY")
    default_model = "embed-english-light-v3.0"
    # pymilvus.model's table, with embed-v4.0's default size (Cohere's model docs)
    dims = MappingProxyType(
        {
            "embed-v4.0": 1536,
            "embed-english-v3.0": 1024,
            "embed-english-light-v3.0": 384,
            "embed-english-v2.0": 4096,
            "embed-english-light-v2.0": 1024,
            "embed-multilingual-v3.0": 1024,
            "embed-multilingual-light-v3.0": 384,
            "embed-multilingual-v2.0": 768,
        }
    )
    max_batch = 96
    input_types = MappingProxyType({"query": "search_query", "document": "search_document"})

    def endpoint(self, role: Role) -> str:
        return f"{self.url}/embed"

    def payload(self, texts: Sequence[str], role: Role) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "texts": list(texts),
            "input_type": self.input_types[role],
            "embedding_types": ["float"],
        }
        if self.dimensions is not None:
            body["output_dimension"] = self.dimensions
        return {**body, **self.options}

    def vectors(self, body: Any) -> list[list[float]]:
        rows: list[list[float]] = body["embeddings"]["float"]
        return rows
