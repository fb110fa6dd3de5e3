"""Timing helpers shared by the benchmarks: alternate the contenders, report medians and ratios.

These machines are noisy, so every benchmark runs the reference pipeline and multiembed in the
same process, alternating which goes first, and reports the ratio of medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def alternate(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round for each contender; the starting contender alternates between rounds."""
    names = list(contenders)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        order = names if round_number % 2 == 0 else names[::-1]
        for name in order:
            started = time.perf_counter()
            contenders[name]()
            timings[name].append(time.perf_counter() - started)
    return timings


def report(timings: dict[str, list[float]], items: int, unit: str, baseline: str, candidate: str) -> float:
    """Print items/s per contender and the candidate/baseline throughput ratio; return the ratio."""
    rates = {name: items / statistics.median(seconds) for name, seconds in timings.items()}
    for name, rate in rates.items():
        spread = ", ".join(f"{items / s:.1f}" for s in timings[name])
        print(f"{name:<28} {rate:8.1f} {unit}/s (median; rounds: {spread})")
    ratio = rates[candidate] / rates[baseline]
    print(f"ratio {candidate} / {baseline}: {ratio:.3f}")
    return ratio
