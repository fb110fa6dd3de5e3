"""pymilvus.model's ``MGTEEmbeddingFunction``: same arguments, methods and return types.

It runs multiembed's ``mgte`` modality, so the vectors equal pymilvus.model's for the same
weights. A call returns ``{"dense": [arrays], "sparse": csr_array}`` with the keys asked for.

One difference: pymilvus.model always runs the code shipped with the model
(``trust_remote_code=True``); here that code runs only when you pass ``trust_remote_code=True``,
which the published Alibaba-NLP/gte-multilingual-base needs (its class is not in transformers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from multiembed.model.hybrid.bge_m3 import precision, pymilvus_outputs, unknown_arguments

if TYPE_CHECKING:
    from multiembed.modalities.mgte import MGTEEncoder

__all__ = ["MGTEEmbeddingFunction"]


class MGTEEmbeddingFunction:
    """mGTE: dense (CLS, cut to ``dimensions`` values, then normalised) and sparse token weights per text.

    ``device=""`` picks cuda, mps or cpu; ``use_fp16`` runs in float16 off the CPU. Besides the named
    arguments it takes ``dimension`` (pymilvus.model's alias of ``dimensions``) and
    ``trust_remote_code``; anything else is refused with a ``ConfigError``.
    """

    def __init__(
        self,
        model_name: str = "Alibaba-NLP/gte-multilingual-base",
        batch_size: int = 16,
        device: str = "",
        normalize_embeddings: bool = True,
        dimensions: int | None = None,
        use_fp16: bool = False,
        return_dense: bool = True,
        return_sparse: bool = True,
        **kwargs: Any,
    ) -> None:
        import multiembed

        if "dimension" in kwargs:
            dimensions = kwargs.pop("dimension")
        trust_remote_code = bool(kwargs.pop("trust_remote_code", False))
        unknown_arguments(kwargs, "MGTEEmbeddingFunction")
        self.model_name = model_name
        self.batch_size = batch_size
        self.normalize_embeddings = normalize_embeddings
        self.device = device
        self.use_fp16 = use_fp16
        where, dtype = precision(device, use_fp16)
        self.encoder = cast(
            "MGTEEncoder",
            multiembed.load(
                "mgte",
                model_name,
                device=where,
                dtype=dtype,
                batch_size=batch_size,
                normalize=normalize_embeddings,
                dimension=dimensions,
                return_dense=return_dense,
                return_sparse=return_sparse,
                trust_remote_code=trust_remote_code,
            ),
        )
        #: the dense vectors' length (the model's hidden size when ``dimensions`` is None)
        self.dimensions = self.encoder.dimension

    def __call__(self, texts: list[str]) -> dict[str, Any]:
        return self._encode(texts)

    @property
    def dim(self) -> dict[str, int]:
        return {"dense": self.dimensions, "sparse": self.encoder.vocab_size}

    def _encode(self, texts: list[str]) -> dict[str, Any]:
        return pymilvus_outputs(self.encoder, list(texts))

    def encode_queries(self, queries: list[str]) -> dict[str, Any]:
        return self._encode(queries)

    def encode_documents(self, documents: list[str]) -> dict[str, Any]:
        return self._encode(documents)
