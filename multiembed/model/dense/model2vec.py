"""pymilvus.model's ``Model2VecEmbeddingFunction``, run through multiembed's ``model2vec`` modality.

``model_source`` is a local Model2Vec folder or a hub id (default ``minishlab/potion-base-8M``); a
hub id is read from the Hugging Face cache and never downloaded while offline. The vectors equal
``model2vec.StaticModel.encode`` for the same folder. Queries and documents are embedded alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiembed.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from multiembed.encoder import Encoder

__all__ = ["Model2VecEmbeddingFunction"]

#: the keyword arguments of ``StaticModel.from_pretrained`` that change the vectors, and are taken
_TAKEN = ("normalize", "max_length", "dimensionality")


class Model2VecEmbeddingFunction:
    """pymilvus.model's ``Model2VecEmbeddingFunction``: a static model, run on the CPU by default.

    Of ``StaticModel.from_pretrained``'s keyword arguments, ``normalize``, ``max_length`` and
    ``dimensionality`` are taken (``None`` keeps the model's own setting, so ``max_length=None``
    does not turn truncation off); ``device`` and ``batch_size`` are multiembed's own. Others
    (``token``, ``quantize_to``, ...) raise a ``ConfigError`` naming them.
    """

    def __init__(self, model_source: str | Path = "minishlab/potion-base-8M", **kwargs: Any) -> None:
        import multiembed

        device = kwargs.pop("device", "cpu")
        batch_size = kwargs.pop("batch_size", 256)
        unknown = sorted(set(kwargs) - set(_TAKEN))
        if unknown:
            raise ConfigError(f"Model2VecEmbeddingFunction does not take {', '.join(unknown)}")
        self.model_source = model_source
        self.encoder: Encoder = multiembed.load(
            "model2vec", os.fspath(model_source), device=device, batch_size=batch_size, **kwargs
        )

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        vectors: list[np.ndarray] = self.encoder.encode_documents(list(texts))
        return vectors

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        return self._encode(texts)

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        return self._encode(queries)

    def encode_documents(self, documents: list[str]) -> list[np.ndarray]:
        return self._encode(documents)
