"""Batching helpers: bounded windows, size ordering inside a window, and order restoration.

Sorting a window by size keeps padding low (a batch of similar lengths wastes little compute); the
window bound keeps memory flat on endless streams. The argsort matches sentence-transformers' so the
same inputs form the same batches and give bit-for-bit comparable results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

import numpy as np

from multiembed.errors import ConfigError

T = TypeVar("T")


def windows(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items, pulled lazily from any iterable."""
    if size < 1:
        raise ConfigError(f"window size must be >= 1, got {size}")
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def longest_first(sizes: Sequence[int]) -> np.ndarray:
    """Indices that visit items from the largest to the smallest; ties keep their input order."""
    return np.argsort([-size for size in sizes], kind="stable")


def chunked(sequence: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Slices of at most ``size`` elements."""
    if size < 1:
        raise ConfigError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(sequence), size):
        yield sequence[start : start + size]
