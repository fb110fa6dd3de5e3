"""pymilvus.model's ``CrossEncoderRerankFunction``: a sentence-transformers cross-encoder, run locally."""

from __future__ import annotations

from typing import Any

from multiembed.errors import ConfigError
from multiembed.model.reranker.result import RerankResult

__all__ = ["CrossEncoderRerankFunction"]


def _local_model(name: str) -> str:
    """A local folder as is; a hub id from the Hugging Face cache (never downloaded when offline)."""
    from multiembed.models import local_or_hub

    return local_or_hub(name, "a cross-encoder folder saved with CrossEncoder(...).save(path)")


class CrossEncoderRerankFunction:
    """pymilvus.model's ``CrossEncoderRerankFunction``: a sentence-transformers cross-encoder."""

    def __init__(
        self,
        model_name: str = "",
        device: str = "",
        batch_size: int = 32,
        activation_fct: Any = None,
        **kwargs: Any,
    ) -> None:
        from sentence_transformers import CrossEncoder

        from multiembed.device import resolve_device
        from multiembed.models import loading

        trust_remote_code = bool(kwargs.pop("trust_remote_code", False))
        if kwargs:
            raise ConfigError(f"CrossEncoderRerankFunction does not take {', '.join(sorted(kwargs))}")
        if not model_name:
            raise ConfigError(
                "CrossEncoderRerankFunction needs model_name (a local folder or a cached hub id)"
            )
        self.model_name = model_name
        self.device = str(resolve_device(device or "auto"))
        self.batch_size = batch_size
        self.activation_fct = activation_fct
        path = _local_model(model_name)
        with loading(model_name, "a sentence-transformers cross-encoder", path):
            self.model = CrossEncoder(
                path, device=self.device, activation_fn=activation_fct, trust_remote_code=trust_remote_code
            )

    def __call__(self, query: str, documents: list[str], top_k: int = 5) -> list[RerankResult]:
        """The ``top_k`` best documents for ``query`` (all of them when ``top_k`` is 0), best first."""
        if not documents:
            return []
        scores = self.model.predict([[query, document] for document in documents], batch_size=self.batch_size)
        order = sorted(range(len(documents)), key=lambda index: float(scores[index]), reverse=True)
        if top_k:
            order = order[:top_k]
        return [RerankResult(documents[index], float(scores[index]), index) for index in order]
