"""The result every reranker returns, as pymilvus.model's: ``RerankResult(text, score, index)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RerankResult:
    """One reranked document: its text, the reranker's score and its position in the input."""

    text: str
    score: float
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "score": self.score, "index": self.index}
