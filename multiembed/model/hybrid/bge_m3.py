"""pymilvus.model's ``BGEM3EmbeddingFunction``: same arguments, methods and return types.

It runs multiembed's ``bge-m3`` modality (transformers only: no FlagEmbedding, no download when
offline), so the dense, sparse and ColBERT vectors equal FlagEmbedding's ``BGEM3FlagModel``'s for
the same weights. A call returns ``{"dense": [arrays], "sparse": csr_array, "colbert_vecs":
[matrices]}`` with the keys that were asked for; the sparse rows iterate as ``(1, dim)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp

from multiembed.errors import ConfigError
from multiembed.model.rows import sparse_rows

if TYPE_CHECKING:
    from multiembed.lexical import TokenizedTextEncoder
    from multiembed.modalities.bge_m3 import BGEM3Encoder

__all__ = ["BGEM3EmbeddingFunction"]

#: the modality's output names -> pymilvus.model's keys
_KEYS = {"dense": "dense", "sparse": "sparse", "colbert": "colbert_vecs"}


def precision(device: str | list[str] | None, use_fp16: bool) -> tuple[str, str | None]:
    """``(device, dtype)`` for ``load()``: float16 only off the CPU, as FlagEmbedding decides.

    None / "" pick cuda, mps or cpu; of a list of devices (FlagEmbedding's ``devices``) the first.
    """
    from multiembed.device import resolve_device

    if isinstance(device, (list, tuple)):
        device = device[0] if device else None
    name = device or "auto"
    return name, "float16" if use_fp16 and resolve_device(name).type != "cpu" else None


def unknown_arguments(kwargs: dict[str, Any], function: str) -> None:
    """Arguments pymilvus.model would hand to its backend and multiembed does not take: named."""
    if kwargs:
        raise ConfigError(f"{function} does not take {', '.join(sorted(kwargs))}")


def pymilvus_outputs(encoder: TokenizedTextEncoder, texts: list[str]) -> dict[str, Any]:
    """The encoder's outputs under pymilvus.model's keys: dense arrays, a float64 sparse array, matrices."""
    values = encoder.encode_outputs(texts)
    result: dict[str, Any] = {}
    for name, value in values.items():
        result[_KEYS.get(name, name)] = (
            sparse_rows(value.astype(np.float64)) if sp.issparse(value) else list(value)
        )
    return result


class BGEM3EmbeddingFunction:
    """BGE-M3: dense (CLS), sparse (lexical weights) and, when asked, ColBERT vectors per text.

    ``device=None`` picks cuda, mps or cpu; ``use_fp16`` runs in float16 off the CPU. Besides the
    named arguments it takes ``devices`` (pymilvus.model's alias of ``device``), ``colbert_dim``
    (checked against the head; -1: any) and ``trust_remote_code``; other FlagEmbedding arguments
    are refused with a ``ConfigError``.
    """

    def __init__(
        self,
        model_name: str = "BAAI/bge-m3",
        batch_size: int = 16,
        device: str | list[str] | None = None,
        normalize_embeddings: bool = True,
        use_fp16: bool = False,
        return_dense: bool = True,
        return_sparse: bool = True,
        return_colbert_vecs: bool = False,
        **kwargs: Any,
    ) -> None:
        import multiembed

        if "devices" in kwargs:
            device = kwargs.pop("devices")
        trust_remote_code = bool(kwargs.pop("trust_remote_code", False))
        colbert_dim = kwargs.pop("colbert_dim", -1)  # FlagEmbedding's; here read from colbert_linear.pt
        unknown_arguments(kwargs, "BGEM3EmbeddingFunction")
        self.model_name = model_name
        self.batch_size = batch_size
        self.normalize_embeddings = normalize_embeddings
        self.device = device
        self.use_fp16 = use_fp16
        where, dtype = precision(device, use_fp16)
        self.encoder = cast(
            "BGEM3Encoder",
            multiembed.load(
                "bge-m3",
                model_name,
                device=where,
                dtype=dtype,
                batch_size=batch_size,
                normalize=normalize_embeddings,
                return_dense=return_dense,
                return_sparse=return_sparse,
                return_colbert_vecs=return_colbert_vecs,
                trust_remote_code=trust_remote_code,
            ),
        )
        if colbert_dim > 0 and colbert_dim != self.encoder.sizes["colbert"]:
            raise ConfigError(
                f"colbert_dim={colbert_dim}, but {model_name}'s colbert_linear.pt gives "
                f"{self.encoder.sizes['colbert']}-d vectors"
            )

    def __call__(self, texts: list[str]) -> dict[str, Any]:
        return self._encode(texts)

    @property
    def dim(self) -> dict[str, int]:
        """Every output's size, as pymilvus.model gives it (whether it is returned or not)."""
        sizes = self.encoder.sizes
        return {"dense": sizes["dense"], "colbert_vecs": sizes["colbert"], "sparse": sizes["sparse"]}

    def _encode(self, texts: list[str]) -> dict[str, Any]:
        return pymilvus_outputs(self.encoder, list(texts))

    def encode_queries(self, queries: list[str]) -> dict[str, Any]:
        return self._encode(queries)

    def encode_documents(self, documents: list[str]) -> dict[str, Any]:
        return self._encode(documents)
