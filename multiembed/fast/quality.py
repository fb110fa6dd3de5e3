"""The quality gate: how close a fast encoder's vectors are to the exact torch float32 ones.

Three numbers on the fixed sample (:mod:`multiembed.fast.corpus`): the lowest and the mean cosine
between each item's fast and exact vector, and retrieval agreement - for each query, the share of
its exact top-10 documents that the fast vectors also rank in the top 10 (mean over the queries).
A fast mode whose lowest cosine is below :data:`MIN_COSINE` is not offered by default: ``auto``
skips it, and an explicit request gets a :class:`LowQualityWarning` naming the numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: the lowest cosine to the exact vectors a fast mode must keep on every sample item
MIN_COSINE = 0.99
#: neighbours compared per query for retrieval agreement
TOP_K = 10


class LowQualityWarning(UserWarning):
    """A fast mode was requested explicitly although it fails the quality gate on this machine."""


@dataclass(frozen=True)
class QualityReport:
    """The gate's numbers for one fast mode against exact float32 torch."""

    min_cosine: float
    mean_cosine: float
    top10_agreement: float
    items: int
    queries: int

    @property
    def passed(self) -> bool:
        return self.min_cosine >= MIN_COSINE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "threshold": MIN_COSINE}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityReport:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def describe(self) -> str:
        return (
            f"min cosine {self.min_cosine:.5f}, mean {self.mean_cosine:.5f}, "
            f"top-{TOP_K} agreement {self.top10_agreement:.3f} ({self.items} items, {self.queries} queries)"
        )


def _unit(vectors: np.ndarray) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float64)
    unit: np.ndarray = rows / np.clip(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12, None)
    return unit


def cosines(exact: np.ndarray, fast: np.ndarray) -> np.ndarray:
    """Row-wise cosine between two ``(n, dim)`` matrices of the same items."""
    if exact.shape != fast.shape:
        raise ValueError(f"shapes differ: exact {exact.shape}, fast {fast.shape}")
    both: np.ndarray = (_unit(exact) * _unit(fast)).sum(axis=1)
    return both


def top_k_agreement(
    exact_docs: np.ndarray, fast_docs: np.ndarray, exact_queries: np.ndarray, fast_queries: np.ndarray
) -> float:
    """Mean share of each query's exact top-k documents that the fast vectors also put in their top k."""
    k = min(TOP_K, len(exact_docs))
    if k == 0 or len(exact_queries) == 0:
        return 1.0
    exact_top = np.argsort(-(_unit(exact_queries) @ _unit(exact_docs).T), axis=1, kind="stable")[:, :k]
    fast_top = np.argsort(-(_unit(fast_queries) @ _unit(fast_docs).T), axis=1, kind="stable")[:, :k]
    shared = [len(set(a) & set(b)) / k for a, b in zip(exact_top.tolist(), fast_top.tolist(), strict=True)]
    return float(np.mean(shared))


def compare(
    exact_docs: np.ndarray, fast_docs: np.ndarray, exact_queries: np.ndarray, fast_queries: np.ndarray
) -> QualityReport:
    """The gate's report for one fast mode: every item's cosine, and retrieval agreement."""
    both = cosines(np.concatenate([exact_docs, exact_queries]), np.concatenate([fast_docs, fast_queries]))
    return QualityReport(
        min_cosine=float(both.min()),
        mean_cosine=float(both.mean()),
        top10_agreement=top_k_agreement(exact_docs, fast_docs, exact_queries, fast_queries),
        items=len(exact_docs),
        queries=len(exact_queries),
    )
