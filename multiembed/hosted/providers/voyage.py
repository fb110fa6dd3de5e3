"""Voyage AI's text embeddings API.

Request ``POST {base_url}/embeddings`` (``https://api.voyageai.com/v1``) with a bearer key and
``{"model", "input": [...], "input_type": "query" | "document" | null}``, plus ``output_dimension``
(when asked for) and ``truncation`` (a boolean, given as a request option); answer
``{"data": [{"embedding", "index"}], "model", "usage"}``. Errors carry ``{"detail": ...}``.
Limit: 1,000 inputs per request ("The maximum length of the list is 1,000", Voyage's API reference,
https://docs.voyageai.com/reference/embeddings-api; older SDK docs said 128, no longer current). The
per-request token caps (120K-1M by model) are not counted here: a batch over them is refused and
split by the hosted modality's item isolation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from multiembed.errors import ConfigError
from multiembed.hosted.provider import Provider, Role, openai_style_vectors, register_provider

#: the output dimensions each model takes, its default first (pymilvus.model's table, Voyage's docs)
OUTPUT_DIMENSIONS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "voyage-3-large": (1024, 256, 512, 2048),
        "voyage-code-3": (1024, 256, 512, 2048),
        "voyage-3.5": (1024, 256, 512, 2048),
        "voyage-3.5-lite": (1024, 256, 512, 2048),
        "voyage-3": (1024,),
        "voyage-3-lite": (512,),
        "voyage-finance-2": (1024,),
        "voyage-multilingual-2": (1024,),
        "voyage-law-2": (1024,),
        "voyage-large-2": (1536,),
        "voyage-code-2": (1536,),
        "voyage-2": (1024,),
        "voyage-lite-02-instruct": (1024,),
    }
)


@register_provider
class Voyage(Provider):
    name = "voyage"
    title = "Voyage AI"
    base_url = "https://api.voyageai.com/v1"
    key_env = ("VOYAGE_API_KEY",)
    default_model = "voyage-3-large"
    dims = MappingProxyType({model: sizes[0] for model, sizes in OUTPUT_DIMENSIONS.items()})
    max_batch = 1000
    input_types = MappingProxyType({"query": "query", "document": "document"})

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        sizes = OUTPUT_DIMENSIONS.get(self.model)
        if self.dimensions is not None and sizes is not None and self.dimensions not in sizes:
            raise ConfigError(
                f"The provided dimension ({self.dimensions}) is not supported by the selected model "
                f"({self.model}); it takes {', '.join(map(str, sizes))} "
                "(https://docs.voyageai.com/docs/embeddings)"
            )

    def endpoint(self, role: Role) -> str:
        return f"{self.url}/embeddings"

    def payload(self, texts: Sequence[str], role: Role) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": list(texts),
            "input_type": self.input_types[role],
        }
        if self.dimensions is not None:
            body["output_dimension"] = self.dimensions
        return {**body, **self.options}

    def vectors(self, body: Any) -> list[list[float]]:
        return openai_style_vectors(body)
