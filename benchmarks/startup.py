"""Start-up time of the commands that need no model: they must answer in well under a second.

    python benchmarks/startup.py [--runs 5]        (about 10 s)

Each command runs as a fresh process (as a user types it); the median wall time of ``--runs`` runs
is printed. ``collections`` lists a small Milvus Lite database made once beforehand, so it pays for
opening Lite, as in real use. ``import torch`` alone is printed for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def median_seconds(command: list[str], runs: int, cwd: Path) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            command, capture_output=True, check=False, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 runs each")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    cli = [sys.executable, "-m", "multiembed"]
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        sample = str(ROOT / "examples" / "sample_texts.txt")
        subprocess.run([*cli, "index", sample, "-m", "text", "-c", "quickstart", "-q"], cwd=cwd, check=True,
                       capture_output=True)  # fmt: skip
        rows = {
            "multiembed --help": [*cli, "--help"],
            "multiembed modalities": [*cli, "modalities"],
            "multiembed collections": [*cli, "collections"],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        }
        for name, command in rows.items():
            print(f"{name:<28} {median_seconds(command, runs, cwd):6.2f} s (median of {runs})")


if __name__ == "__main__":
    main()
