"""Google's Gemini API embeddings (``models.batchEmbedContents``).

Request ``POST {base_url}/models/{model}:batchEmbedContents`` (``https://generativelanguage.
googleapis.com/v1beta``) with the key in the ``x-goog-api-key`` header and ``{"requests": [{"model":
"models/{model}", "content": {"parts": [{"text"}]}, "taskType": "RETRIEVAL_QUERY" |
"RETRIEVAL_DOCUMENT", "outputDimensionality"?}, ...]}``; answer ``{"embeddings": [{"values":
[...]}, ...]}`` in request order (Gemini API reference, https://ai.google.dev/api/embeddings).
Request options (``taskType``, ``title``...) are set on every request of the batch. Errors carry
``{"error": {"code", "message", "status", "details"}}``; a bad key is answered 400 with reason
``API_KEY_INVALID``, which counts as 401 here. The key is read from ``GEMINI_API_KEY`` or
``GOOGLE_API_KEY`` (the names Google's SDK reads).
Limit: 100 requests per batch (the API refuses more: "BatchEmbedContentsRequest.requests: at most
100 requests can be in one batch", langchain-ai/langchainjs#4491, vercel/ai#16575).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from multiembed.hosted.provider import Provider, Role, register_provider

#: error reasons that mean "this key", whatever the status says
KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"})


@register_provider
class Gemini(Provider):
    name = "gemini"
    title = "Gemini"
    base_url = "https://generativelanguage.googleapis.com/v1beta"
    key_env = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    default_model = "gemini-embedding-001"
    # pymilvus.model's table and gemini-embedding-001's default size (Gemini's model docs)
    dims = MappingProxyType(
        {
            "gemini-embedding-001": 3072,
            "gemini-embedding-exp-03-07": 3072,
            "text-embedding-004": 768,
            "embedding-001": 768,
            "models/gemini-embedding-001": 3072,
            "models/gemini-embedding-exp-03-07": 3072,
            "models/text-embedding-004": 768,
            "models/embedding-001": 768,
        }
    )
    max_batch = 100
    input_types = MappingProxyType({"query": "RETRIEVAL_QUERY", "document": "RETRIEVAL_DOCUMENT"})

    def headers(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    @property
    def model_id(self) -> str:
        """The model without the ``models/`` resource prefix (both spellings are accepted)."""
        return self.model.removeprefix("models/")

    def endpoint(self, role: Role) -> str:
        return f"{self.url}/models/{self.model_id}:batchEmbedContents"

    def payload(self, texts: Sequence[str], role: Role) -> dict[str, Any]:
        extra: dict[str, Any] = {"taskType": self.input_types[role]}
        if self.dimensions is not None:
            extra["outputDimensionality"] = self.dimensions
        return {
            "requests": [
                {
                    "model": f"models/{self.model_id}",
                    "content": {"parts": [{"text": text}]},
                    **extra,
                    **self.options,
                }
                for text in texts
            ]
        }

    def vectors(self, body: Any) -> list[list[float]]:
        return [item["values"] for item in body["embeddings"]]

    def refusal_status(self, status: int, body: Any) -> int:
        error = body.get("error") if isinstance(body, dict) else None
        details = error.get("details") if isinstance(error, dict) else None
        reasons = {d.get("reason") for d in details or [] if isinstance(d, dict)}
        return 401 if reasons & KEY_REASONS else status
