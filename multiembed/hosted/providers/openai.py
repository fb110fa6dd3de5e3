"""OpenAI's embeddings API, and any server that speaks it (vLLM, Ollama, LiteLLM, ...) via ``base_url``.

Request ``POST {base_url}/embeddings`` with ``{"model", "input": [...], "encoding_format": "float"}``
(+ ``dimensions`` for the text-embedding-3 models); answer ``{"data": [{"embedding", "index"}]}``.
Limit: 2,048 inputs per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from multiembed.hosted.provider import Provider, Role, openai_style_vectors, register_provider


@register_provider
class OpenAI(Provider):
    name = "openai"
    title = "OpenAI"
    base_url = "https://api.openai.com/v1"
    key_env = ("OPENAI_API_KEY",)
    default_model = "text-embedding-ada-002"
    dims = MappingProxyType(
        {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
    )
    max_batch = 2048

    def endpoint(self, role: Role) -> str:
        return f"{self.url}/embeddings"

    def payload(self, texts: Sequence[str], role: Role) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "input": list(texts), "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        return {**body, **self.options}

    def vectors(self, body: Any) -> list[list[float]]:
        return openai_style_vectors(body)
