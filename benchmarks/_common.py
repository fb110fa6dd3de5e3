"""Timing helpers shared by the benchmarks: alternate the contenders, report medians and ratios.

These machines are noisy, so every benchmark runs the reference pipeline and multiembed in the
same process, alternating which goes first, and reports the ratio of medians.

Every benchmark also takes ``--quick``: fewer items and rounds, under a minute on a 2-core CPU, the
same lines printed (a smoke test of the benchmark, not a measurement to quote).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def add_quick(parser: argparse.ArgumentParser, quick: dict[str, Any]) -> None:
    """Add ``--quick``; ``quick`` holds the sizes it uses (given options still win)."""
    sizes = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in quick.items())
    parser.add_argument(
        "--quick", action="store_true", help=f"under a minute on 2 cores: {sizes} unless given"
    )


def apply_sizes(args: argparse.Namespace, full: dict[str, Any], quick: dict[str, Any]) -> None:
    """Fill every size option left unset (None) from ``quick`` under ``--quick``, else from ``full``."""
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def rate_text(rate: float) -> str:
    """A rate with at least three significant digits: 151.4, 18.0, 1.50, 0.0412 (never 0.0)."""
    return f"{rate:.1f}" if rate >= 10 else f"{rate:#.3g}"


def seconds_text(seconds: float) -> str:
    """Seconds to one decimal, or two below 10 s (a re-run that skips everything is not 0.0 s)."""
    return f"{seconds:.1f}" if seconds >= 10 else f"{seconds:.2f}"


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


def report(
    timings: dict[str, list[float]], items: int, unit: str, baseline: str, candidates: str | Sequence[str]
) -> dict[str, float]:
    """Print items/s per contender once, then each candidate/baseline throughput ratio; return them."""
    rates = {name: items / statistics.median(seconds) for name, seconds in timings.items()}
    for name, rate in rates.items():
        spread = ", ".join(rate_text(items / s) for s in timings[name])
        print(f"{name:<28} {rate_text(rate):>8} {unit}/s (median; rounds: {spread})")
    ratios = {}
    for candidate in [candidates] if isinstance(candidates, str) else candidates:
        ratios[candidate] = rates[candidate] / rates[baseline]
        print(f"ratio {candidate} / {baseline}: {ratios[candidate]:.3f}")
    return ratios
