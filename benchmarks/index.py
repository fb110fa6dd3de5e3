"""Indexing cost split: time in Milvus Lite vs time encoding, for 5,000 text items.

    python benchmarks/index.py [--texts 5000] [--batch-size 32] [--quick]

Indexes the texts with the packaged all-MiniLM-L6-v2 into a fresh Milvus Lite file through
``MilvusStore.add`` and times every Milvus call it makes (the already-stored lookups and the
upserts). Target: Milvus under 10% of the total. A second pass over the same texts shows the
re-run cost, where every item is skipped before the model runs. Takes about 1 minute on a 2-core
CPU; --quick (500 texts) about 15 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# gRPC's C core logs to stderr on its own (Milvus Lite's "too_many_pings" GOAWAY, at INFO/ERROR);
# its verbosity is read once, when grpc is first imported, so it is set before anything imports it.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_quick, apply_sizes, seconds_text
from text import mixed_texts

FULL = {"texts": 5000}
QUICK = {"texts": 500}


def timed(spent: dict[str, float], name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    return wrapper


def run(store: Any, texts: list[str], batch_size: int) -> tuple[float, dict[str, float], Any]:
    spent: dict[str, float] = defaultdict(float)
    for name in ("query", "upsert"):
        setattr(store.client, name, timed(spent, name, getattr(store.client, name)))
    started = time.perf_counter()
    report = store.add(texts, batch_size=batch_size, progress=False)
    return time.perf_counter() - started, spent, report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, help="default 5000")
    parser.add_argument("--batch-size", type=int, default=32)
    add_quick(parser, QUICK)
    args = parser.parse_args()
    apply_sizes(args, FULL, QUICK)

    import multiembed
    from multiembed.cli.common import quiet_libraries
    from multiembed.milvus import MilvusStore
    from multiembed.milvus.client import silence_library_logs

    silence_library_logs()  # pymilvus' and Milvus Lite's Python loggers, as the CLI does without -v
    quiet_libraries()  # no weight-loading bars or library warnings between the result lines

    texts = mixed_texts(args.texts, seed=1)
    encoder = multiembed.load("text", device="cpu", batch_size=args.batch_size)
    uri = str(Path(tempfile.mkdtemp(prefix="multiembed-index-")) / "bench.db")
    with MilvusStore(uri, "bench", encoder) as store:
        for label in ("first run", "re-run"):
            total, spent, report = run(store, texts, args.batch_size)
            milvus = sum(spent.values())
            print(
                f"{label}: {args.texts} texts in {seconds_text(total)}s, "
                f"added {report.added}, skipped {report.skipped}; "
                f"Milvus {milvus:.2f}s ({100 * milvus / total:.1f}%: lookups {spent['query']:.2f}s, "
                f"upserts {spent['upsert']:.2f}s), encoding and the rest {seconds_text(total - milvus)}s"
            )
        print(f"rows stored: {store.count()}")


if __name__ == "__main__":
    main()
