"""Batching helpers: bounded windows, size ordering inside a window, budgeted batches, order restoration.

Sorting a window by size keeps padding low (a batch of similar lengths wastes little compute); the
window bound keeps memory flat on endless streams. The argsort matches sentence-transformers' so the
same inputs form the same batches and give bit-for-bit comparable results.

An encoder whose items differ in cost (texts: tokens) may also declare a budget: a batch then holds
at most that many padded units (its largest item's size times its item count), so long items go in
small batches (bounded memory) and short ones in full ``batch_size`` batches. The encoder restores
the input order afterwards from each item's position.
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


def budget_batches(sizes: Sequence[int], max_items: int, budget: int | None = None) -> list[list[int]]:
    """Item indices, largest first, cut into batches that pad to at most ``budget`` units.

    A batch is padded to its first (largest) item, so it costs ``sizes[first] * len(batch)``; it is
    closed when one more item would pass ``budget`` or ``max_items``. An item larger than the budget
    is a batch of its own. Without a budget every batch has ``max_items`` items (the last fewer).
    Ties keep their input order, so equal inputs always form the same batches.
    """
    if max_items < 1:
        raise ConfigError(f"batch size must be >= 1, got {max_items}")
    if budget is not None and budget < 1:
        raise ConfigError(f"batch budget must be >= 1, got {budget}")
    order = [int(index) for index in longest_first(sizes)]
    if budget is None:
        return [list(batch) for batch in chunked(order, max_items)]
    batches: list[list[int]] = []
    batch: list[int] = []
    for index in order:
        if batch and (len(batch) == max_items or (len(batch) + 1) * sizes[batch[0]] > budget):
            batches.append(batch)
            batch = []
        batch.append(index)
    if batch:
        batches.append(batch)
    return batches
