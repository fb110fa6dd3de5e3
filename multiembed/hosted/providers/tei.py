"""Hugging Face text-embeddings-inference (TEI): a self-hosted server, reached at ``base_url``.

Request ``POST {base_url}/v1/embeddings`` (TEI's OpenAI-compatible route, the one pymilvus.model's
``TEIEmbeddingFunction`` uses) with ``{"input": [...]}`` (plus ``"model"`` when one is named, which
TEI ignores); answer ``{"object": "list", "data": [{"embedding", "index"}], "model", "usage"}``.
Errors carry ``{"message", "code", "type"}`` (TEI's ``OpenAICompatErrorResponse``). No key by default;
a server started with ``--api-key`` takes it as a bearer token, read here from ``TEI_API_KEY``.
``dimensions`` names the server's dim (as in pymilvus.model) and is not sent; TEI's own truncation
can be asked for with ``request_options={"dimensions": N}``. Without it the dim costs one request.
Limit: 32 inputs per request, TEI's default ``--max-client-batch-size`` (router/src/main.rs in
huggingface/text-embeddings-inference; a server started with a lower value answers 413).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from multiembed.hosted.provider import Provider, Role, openai_style_vectors, register_provider


@register_provider
class TEI(Provider):
    name = "tei"
    title = "TEI"
    base_url = "http://127.0.0.1:8080"
    key_env = ("TEI_API_KEY",)
    key_required = False
    default_model = "default"
    max_batch = 32

    def endpoint(self, role: Role) -> str:
        return f"{self.url}/v1/embeddings"

    def payload(self, texts: Sequence[str], role: Role) -> dict[str, Any]:
        body: dict[str, Any] = {"input": list(texts)}
        if self.model != self.default_model:
            body["model"] = self.model
        return {**body, **self.options}

    def vectors(self, body: Any) -> list[list[float]]:
        return openai_style_vectors(body)
