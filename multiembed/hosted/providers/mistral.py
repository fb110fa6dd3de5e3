"""Mistral AI's embeddings API (OpenAI's shape).

Request ``POST {base_url}/embeddings`` (``https://api.mistral.ai/v1``) with a bearer key and
``{"model", "input": [...]}`` plus ``output_dimension`` when asked for (models that take it, e.g.
codestral-embed); answer ``{"data": [{"embedding", "index"}], "model", "usage"}`` (Mistral's API
reference, https://docs.mistral.ai/api/endpoint/embeddings). The key is read from
``MISTRAL_API_KEY`` (Mistral's SDK) or ``MISTRALAI_API_KEY`` (pymilvus.model's name).
Limit: 512 inputs per request (the API refuses more: "Too many inputs in request, split into more
batches", error 3210, raphaelmansuy/edgequake-llm#74). Requests are also capped at 16,384 tokens
("Too many tokens in batch. Max is 16384", aurelio-labs/semantic-router#297); tokens are not
counted here: such a batch is refused with 400 and the hosted modality splits it.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from multiembed.hosted.provider import Provider, Role, openai_style_vectors, register_provider


@register_provider
class Mistral(Provider):
    name = "mistral"
    title = "Mistral AI"
    base_url = "https://api.mistral.ai/v1"
    key_env = ("MISTRAL_API_KEY", "MISTRALAI_API_KEY")
    default_model = "mistral-embed"
    dims = MappingProxyType({"mistral-embed": 1024})
    max_batch = 512

    def endpoint(self, role: Role) -> str:
        return f"{self.url}/embeddings"

    def payload(self, texts: Sequence[str], role: Role) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "input": list(texts)}
        if self.dimensions is not None:
            body["output_dimension"] = self.dimensions
        return {**body, **self.options}

    def vectors(self, body: Any) -> list[list[float]]:
        return openai_style_vectors(body)
