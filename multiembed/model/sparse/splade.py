"""``SpladeEmbeddingFunction`` with pymilvus.model's name, arguments and return types.

It runs through multiembed's ``splade`` modality, so models come from a local folder, the local
Hugging Face cache or an alias, and nothing is downloaded when offline. Vectors equal
pymilvus.model's for the same weights, with one deliberate difference: padding is left out of the
max-pooling (as in naver's SPLADE), so a text's vector does not depend on the batch it shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from multiembed.errors import ConfigError

if TYPE_CHECKING:
    from multiembed.modalities.splade import SpladeEncoder
    from multiembed.model.rows import SparseRows

__all__ = ["SpladeEmbeddingFunction"]


class SpladeEmbeddingFunction:
    """pymilvus.model's ``SpladeEmbeddingFunction``; rows are ``csr_array``, ``dim`` is the vocabulary size.

    ``encode_queries``/``encode_documents`` prepend ``query_instruction``/``doc_instruction`` and
    prune to ``k_tokens_query``/``k_tokens_document``; ``__call__`` embeds the texts as they are,
    unpruned, as pymilvus.model does. Beyond pymilvus.model: ``query_model_name`` names a separate
    query model (naver's efficient-SPLADE pairs). Of the transformers keyword arguments only
    ``trust_remote_code`` is taken; any other is a ``ConfigError`` naming it.
    """

    def __init__(
        self,
        model_name: str = "naver/splade-cocondenser-ensembledistil",
        batch_size: int = 32,
        query_instruction: str = "",
        doc_instruction: str = "",
        device: str | None = "cpu",
        k_tokens_query: int | None = None,
        k_tokens_document: int | None = None,
        **kwargs: Any,
    ) -> None:
        import multiembed

        trust_remote_code = bool(kwargs.pop("trust_remote_code", False))
        query_model_name = kwargs.pop("query_model_name", None)
        if kwargs:
            raise ConfigError(f"SpladeEmbeddingFunction does not take {', '.join(sorted(kwargs))}")
        self.model_name = model_name
        self.query_model_name = query_model_name
        self.batch_size = batch_size
        self.device = device
        self.k_tokens_query = k_tokens_query
        self.k_tokens_document = k_tokens_document
        self.query_instruction = query_instruction
        self.doc_instruction = doc_instruction
        encoder = multiembed.load(
            "splade",
            model_name,
            device=device,
            batch_size=batch_size,
            query_model=query_model_name,
            k_tokens_query=k_tokens_query,
            k_tokens_document=k_tokens_document,
            query_instruction=query_instruction,
            document_instruction=doc_instruction,
            trust_remote_code=trust_remote_code,
        )
        #: the modality encoder: pass it to ``MilvusStore(encoder=...)`` to index with these settings
        self.encoder = cast("SpladeEncoder", encoder)
        self._plain = self.encoder.variant(k_tokens_document=None, document_instruction="")

    def __call__(self, texts: list[str]) -> SparseRows:
        rows: SparseRows = self._plain.encode_documents(texts)
        return rows

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode_queries(self, queries: list[str]) -> SparseRows:
        rows: SparseRows = self.encoder.encode_queries(queries)
        return rows

    def encode_documents(self, documents: list[str]) -> SparseRows:
        rows: SparseRows = self.encoder.encode_documents(documents)
        return rows
