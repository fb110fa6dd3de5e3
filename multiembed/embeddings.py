"""The result of an encode run: vectors for the items that worked, reasons for those that did not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ItemError:
    """An item that could not be embedded, named so a user can find and fix it."""

    index: int
    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class Embeddings:
    """Vectors ``(n, dim)`` float32 in input order, with their content ids, sources and failures.

    ``indices[i]`` is the position in the input stream of ``vectors[i]``; failed positions appear
    only in ``errors``, so nothing is silently dropped.
    """

    vectors: np.ndarray
    ids: list[str]
    sources: list[str]
    indices: list[int]
    errors: list[ItemError] = field(default_factory=list)
    #: sources of items left out because their key was already stored (or repeated in the input)
    skipped: list[str] = field(default_factory=list)
    #: the decoded items behind ``vectors`` (only when asked for, e.g. texts for BM25 fields)
    raws: list[Any] = field(default_factory=list)
    modality: str = ""
    model: str = ""
    metric: str = "COSINE"

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def total(self) -> int:
        """Items seen: embedded, failed or skipped."""
        return len(self.ids) + len(self.errors) + len(self.skipped)

    def to_milvus_rows(self, vector_field: str = "vector") -> list[dict[str, Any]]:
        """Rows ready for ``MilvusClient.insert/upsert`` with the schema from ``schema_for``."""
        return [
            {
                "id": item_id,
                vector_field: vector,
                "source": source,
                "modality": self.modality,
                "model": self.model,
            }
            for item_id, vector, source in zip(self.ids, self.vectors, self.sources, strict=True)
        ]

    @classmethod
    def concat(
        cls,
        parts: Sequence[Embeddings],
        *,
        dim: int,
        modality: str,
        model: str,
        metric: str = "COSINE",
    ) -> Embeddings:
        """Join the windows of one run back into one result."""
        vectors = [part.vectors for part in parts if len(part)]
        return cls(
            vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), dtype=np.float32),
            ids=[item for part in parts for item in part.ids],
            sources=[item for part in parts for item in part.sources],
            indices=[item for part in parts for item in part.indices],
            errors=[item for part in parts for item in part.errors],
            skipped=[item for part in parts for item in part.skipped],
            raws=[item for part in parts for item in part.raws],
            modality=modality,
            model=model,
            metric=metric,
        )
