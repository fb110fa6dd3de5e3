"""Audio throughput: multiembed vs the reference Whisper pipeline, Whisper-base-sized encoder, fp32.

    python benchmarks/audio.py [--short 8] [--long 2] [--clips 48] [--queries 12] [--timed 12]
                               [--pads 2,5,10,15,20,25] [--rounds 3] [--quick]

Random weights with whisper-base's shape (d_model 512, 6 encoder layers): no Whisper weights can be
had offline here. The reference embeds clip by clip: feature extractor -> encoder (30 s windows)
-> masked mean per window -> frame-weighted average.

1. Exact mode: ``--short`` 2 s clips and ``--long`` 45 s clips (two windows); target ratio >= 1.0.
2. Fast mode (``pad_seconds``): ``--clips`` synthetic sounds of 2-10 s (tones, chords, chirps, noise
   bursts, silences) and ``--queries`` noisy, re-levelled copies of some of them. For each pad in
   ``--pads``: min and mean cosine to the exact vectors, top-10 agreement (the share of each query's
   10 nearest clips under exact vectors that the fast vectors also rank in their top 10), and the
   throughput ratio to the reference on ``--timed`` of the clips. With random weights attention is
   nearly uniform, so every real frame attends to the padding as much as to the sound: likely a
   worst case for cosine (trained attention is peakier; not measured here). Speed ratios do not depend
   on the weights.

Takes about 5 minutes on an idle 2-core CPU (18 on a shared, loaded one); --quick (fewer clips,
rounds and pads) about 1 minute (3.5 loaded).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import add_quick, alternate, apply_sizes, report

RATE = 16000
FULL = {
    "short": 8,
    "long": 2,
    "clips": 48,
    "queries": 12,
    "timed": 12,
    "pads": "2,5,10,15,20,25",
    "rounds": 3,
}
QUICK = {"short": 2, "long": 1, "clips": 12, "queries": 4, "timed": 4, "pads": "5,10", "rounds": 2}


def synthetic_sound(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A few overlapping events: harmonic tones and chords, chirps, filtered noise bursts, silences."""
    count = int(seconds * RATE)
    t = np.arange(count) / RATE
    sound = np.zeros(count)
    for _ in range(rng.integers(2, 7)):
        start = rng.uniform(0, seconds * 0.8)
        length = rng.uniform(0.2, seconds - start)
        inside = (t >= start) & (t < start + length)
        local = t[inside] - start
        attack, release = min(0.05, length / 4), min(0.3, length / 3)
        envelope = np.minimum(1, np.minimum(local / attack, (length - local) / release)).clip(0)
        kind = rng.choice(["tone", "chord", "chirp", "noise"])
        if kind in ("tone", "chord"):
            roots = (
                [rng.uniform(80, 900)] if kind == "tone" else rng.uniform(150, 500) * np.array([1, 1.26, 1.5])
            )
            wave = sum(
                sum(np.sin(2 * np.pi * root * h * local + rng.uniform(0, 6.3)) / h**1.5 for h in range(1, 5))
                for root in roots
            )
            wave *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(2, 7) * local)  # tremolo
        elif kind == "chirp":
            low, high = sorted(rng.uniform(100, 4000, 2))
            frequency = low * (high / low) ** (local / length)
            wave = np.sin(2 * np.pi * np.cumsum(frequency) / RATE)
        else:
            spectrum = np.fft.rfft(rng.normal(size=len(local)))
            bins = np.fft.rfftfreq(len(local), 1 / RATE)
            centre, width = rng.uniform(200, 5000), rng.uniform(100, 2000)
            wave = np.fft.irfft(spectrum * np.exp(-(((bins - centre) / width) ** 2)), len(local))
            wave /= np.abs(wave).max() + 1e-9
        sound[inside] += rng.uniform(0.1, 1.0) * envelope * wave
    sound += rng.normal(0, 10 ** rng.uniform(-4, -2.5), count)  # room noise
    return (sound / (np.abs(sound).max() + 1e-9) * rng.uniform(0.3, 0.9)).astype(np.float32)


def top10_agreement(
    queries_a: np.ndarray, corpus_a: np.ndarray, queries_b: np.ndarray, corpus_b: np.ndarray
) -> float:
    """Mean share of each query's 10 nearest corpus items (cosine) under A also in its top 10 under B."""
    k = min(10, len(corpus_a))
    top_a = np.argsort(-(queries_a @ corpus_a.T), axis=1)[:, :k]
    top_b = np.argsort(-(queries_b @ corpus_b.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_a, top_b, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", type=int, help="exact mode: number of 2 s clips (default 8)")
    parser.add_argument("--long", type=int, help="exact mode: number of 45 s clips (default 2)")
    parser.add_argument("--clips", type=int, help="fast mode: synthetic 2-10 s clips (default 48)")
    parser.add_argument("--queries", type=int, help="fast mode: noisy copies searched for (default 12)")
    parser.add_argument("--timed", type=int, help="fast mode: clips timed per round (default 12)")
    parser.add_argument(
        "--pads", help="fast mode: pad_seconds values, comma-separated (default 2,5,10,15,20,25)"
    )
    parser.add_argument("--rounds", type=int, help="default 3")
    add_quick(parser, QUICK)
    args = parser.parse_args()
    apply_sizes(args, FULL, QUICK)

    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    import multiembed
    from multiembed.cli.common import quiet_libraries

    quiet_libraries()  # no weight-loading bars or library warnings between the result lines
    torch.manual_seed(0)
    config = WhisperConfig(d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048,
                           decoder_layers=1, decoder_attention_heads=8, decoder_ffn_dim=2048)  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="multiembed-audio-")) / "whisper-base-sized"
    WhisperModel(config).eval().save_pretrained(path)
    WhisperFeatureExtractor().save_pretrained(path)

    extractor = WhisperFeatureExtractor.from_pretrained(path)
    encoder_only = WhisperModel.from_pretrained(path).eval().encoder

    def reference(clips: list[np.ndarray]) -> np.ndarray:
        vectors = []
        with torch.inference_mode():
            for clip in clips:
                parts, weights = [], []
                for start in range(0, len(clip), 30 * RATE):
                    window = clip[start : start + 30 * RATE]
                    features = extractor(window, sampling_rate=RATE, return_tensors="pt")["input_features"]
                    hidden = encoder_only(input_features=features).last_hidden_state[0]
                    frames = math.ceil(len(window) / 320)
                    parts.append(hidden[:frames].mean(dim=0) * frames)
                    weights.append(frames)
                vectors.append(torch.nn.functional.normalize(sum(parts) / sum(weights), dim=-1))
        return torch.stack(vectors).numpy()

    def embed(encoder: multiembed.Encoder, clips: list[np.ndarray]) -> np.ndarray:
        return encoder.encode([(clip, RATE) for clip in clips], progress=False).vectors

    exact = multiembed.load("audio", str(path), device="cpu", workers=0)  # CPU default: a clip per forward
    print(f"Whisper-base-sized encoder (random weights), fp32, torch threads {torch.get_num_threads()}")

    # ---- 1. exact mode: 2 s and 45 s clips
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, 2 * RATE).astype(np.float32) for _ in range(args.short)]
    clips += [rng.normal(0, 0.1, 45 * RATE).astype(np.float32) for _ in range(args.long)]
    difference = np.abs(reference(clips) - embed(exact, clips)).max()
    print(f"\nexact mode: {args.short} clips of 2 s + {args.long} of 45 s")
    print(f"max abs difference between the pipelines: {difference:.2e}")
    timings = alternate(
        {"reference (clip by clip)": lambda: reference(clips), "multiembed": lambda: embed(exact, clips)},
        args.rounds,
    )
    report(timings, len(clips), "clips", "reference (clip by clip)", "multiembed")

    # ---- 2. fast mode: 2-10 s synthetic sounds
    rng = np.random.default_rng(1)
    corpus = [synthetic_sound(rng, rng.uniform(2, 10)) for _ in range(args.clips)]
    queries, sources = [], rng.choice(len(corpus), args.queries, replace=False)
    for index in sources:
        copy = corpus[index] * rng.uniform(0.5, 1.5) + rng.normal(0, 0.02, len(corpus[index]))
        queries.append(copy[int(rng.uniform(0, 0.3) * RATE) :].astype(np.float32))  # starts a bit later
    timed = corpus[: args.timed]
    seconds = [len(clip) / RATE for clip in corpus]
    print(f"\nfast mode: {args.clips} synthetic clips of {min(seconds):.1f}-{max(seconds):.1f} s "
          f"(mean {np.mean(seconds):.1f} s), {args.queries} noisy copies as queries; "
          f"{args.timed} clips timed")  # fmt: skip
    started = time.perf_counter()
    exact_corpus, exact_queries = embed(exact, corpus), embed(exact, queries)
    print(f"exact vectors in {time.perf_counter() - started:.0f} s; "
          f"queries whose nearest clip is their source: "
          f"{np.mean(np.argmax(exact_queries @ exact_corpus.T, axis=1) == sources):.0%}")  # fmt: skip
    pads = [float(pad) for pad in args.pads.split(",")]
    fast = {
        pad: multiembed.load("audio", str(path), device="cpu", workers=0, pad_seconds=pad) for pad in pads
    }
    print(f"{'pad_seconds':>11} {'min cos':>8} {'mean cos':>8} {'top-10':>7}")
    for pad, encoder in fast.items():
        fast_corpus, fast_queries = embed(encoder, corpus), embed(encoder, queries)
        cosines = np.sum(fast_corpus * exact_corpus, axis=1)
        agreement = top10_agreement(exact_queries, exact_corpus, fast_queries, fast_corpus)
        print(f"{pad:>11g} {cosines.min():>8.4f} {cosines.mean():>8.4f} {agreement:>7.0%}")
    contenders = {
        "reference (30 s windows)": lambda: reference(timed),
        "multiembed exact": lambda: embed(exact, timed),
    }
    for pad, encoder in fast.items():
        contenders[f"multiembed pad_seconds={pad:g}"] = lambda encoder=encoder: embed(encoder, timed)
    timings = alternate(contenders, args.rounds)
    report(timings, len(timed), "clips", "reference (30 s windows)", list(contenders)[1:])


if __name__ == "__main__":
    main()
