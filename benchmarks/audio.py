"""Audio throughput: multiembed vs the reference Whisper pipeline, Whisper-base-sized encoder, fp32.

    python benchmarks/audio.py [--short 8] [--long 2] [--rounds 3] [--quick]

Random weights with whisper-base's shape (d_model 512, 6 encoder layers). The reference embeds
clip by clip: feature extractor -> encoder -> masked mean per 30 s window -> frame-weighted average.
multiembed batches the windows of several clips per forward pass. Clips: 2 s and 45 s (two windows).
Target: ratio >= 1.0. Takes about 1 minute on a 2-core CPU; --quick (2 + 1 clips, 2 rounds) about 25 s.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import add_quick, alternate, apply_sizes, report

RATE = 16000
FULL = {"short": 8, "long": 2, "rounds": 3}
QUICK = {"short": 2, "long": 1, "rounds": 2}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", type=int, help="number of 2 s clips (default 8)")
    parser.add_argument("--long", type=int, help="number of 45 s clips (default 2)")
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

    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, 2 * RATE).astype(np.float32) for _ in range(args.short)]
    clips += [rng.normal(0, 0.1, 45 * RATE).astype(np.float32) for _ in range(args.long)]

    extractor = WhisperFeatureExtractor.from_pretrained(path)
    encoder_only = WhisperModel.from_pretrained(path).eval().encoder

    def reference() -> np.ndarray:
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

    ours = multiembed.load("audio", str(path), device="cpu", workers=0)  # CPU default: a clip per forward

    def run_multiembed() -> np.ndarray:
        return ours.encode([(clip, RATE) for clip in clips], progress=False).vectors

    difference = np.abs(reference() - run_multiembed()).max()
    print(f"{args.short} clips of 2 s + {args.long} of 45 s, Whisper-base-sized encoder, fp32, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"max abs difference between the pipelines: {difference:.2e}")
    timings = alternate({"reference (clip by clip)": reference, "multiembed": run_multiembed}, args.rounds)
    report(timings, len(clips), "clips", "reference (clip by clip)", "multiembed")


if __name__ == "__main__":
    main()
