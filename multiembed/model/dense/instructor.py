"""pymilvus.model's ``InstructorEmbeddingFunction``, run through multiembed's ``instructor`` modality.

Each text is read with its instruction (``query_instruction`` for queries, ``doc_instruction`` for
documents and ``__call__``), pooled over the text's tokens only, as INSTRUCTOR does. The model is a
local folder or a hub id already in the Hugging Face cache; nothing is downloaded while offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multiembed.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from multiembed.encoder import Encoder

__all__ = ["InstructorEmbeddingFunction"]


class InstructorEmbeddingFunction:
    """pymilvus.model's ``InstructorEmbeddingFunction``: same arguments, methods and vectors."""

    def __init__(
        self,
        model_name: str = "hkunlp/instructor-xl",
        batch_size: int = 32,
        query_instruction: str = "Represent the question for retrieval:",
        doc_instruction: str = "Represent the document for retrieval:",
        device: str = "cpu",
        normalize_embeddings: bool = True,
        **kwargs: Any,
    ) -> None:
        import multiembed

        if kwargs:
            raise ConfigError(f"InstructorEmbeddingFunction does not take {', '.join(sorted(kwargs))}")
        self.model_name = model_name
        self.batch_size = batch_size
        self.query_instruction = query_instruction
        self.doc_instruction = doc_instruction
        self.normalize_embeddings = normalize_embeddings
        self.encoder: Encoder = multiembed.load(
            "instructor",
            model_name,
            device=device,
            batch_size=batch_size,
            normalize=normalize_embeddings,
            query_instruction=query_instruction,
            document_instruction=doc_instruction,
        )

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        return self.encode_documents(texts)

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        vectors: list[np.ndarray] = self.encoder.encode_queries(list(queries))
        return vectors

    def encode_documents(self, documents: list[str]) -> list[np.ndarray]:
        vectors: list[np.ndarray] = self.encoder.encode_documents(list(documents))
        return vectors
