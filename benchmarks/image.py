"""Image throughput: multiembed vs the naive single-process loop, full-size ResNet-50, fp32, CPU.

    python benchmarks/image.py [--images 200] [--batch-size 32] [--rounds 3] [--quick]

Takes about 3 minutes on a 2-core CPU; --quick (32 images, 2 rounds) about 30 s.

Both sides use the same random ResNet-50 weights and the IMAGENET1K_V2 transforms. The naive loop
opens, transforms, stacks and runs each batch in one process. multiembed runs once with decoding
in the calling process (``workers=0``) and once with its default worker processes, so the two
sources of speed-up are reported apart: channels_last convolutions, and decode overlapped with
compute. Target: >= 1.2x.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import add_quick, alternate, apply_sizes, report

FULL = {"images": 200, "rounds": 3}
QUICK = {"images": 32, "rounds": 2}


def gradient_jpegs(count: int, width: int = 640, height: int = 480) -> list[bytes]:
    """JPEGs of smooth gradients plus noise (realistic decode cost, not flat colour), reproducible."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    encoded = []
    for _ in range(count):
        base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1)
        base = base * 255 * rng.uniform(0.4, 1, 3)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


def synthetic_jpegs(folder: Path, count: int) -> list[Path]:
    """640x480 gradient JPEGs written to ``folder``."""
    paths = []
    for index, data in enumerate(gradient_jpegs(count)):
        path = folder / f"{index:04d}.jpg"
        path.write_bytes(data)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, help="default 200")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, help="default 3")
    add_quick(parser, QUICK)
    args = parser.parse_args()
    apply_sizes(args, FULL, QUICK)

    import torch
    from PIL import Image
    from torchvision.models import ResNet50_Weights, resnet50

    import multiembed
    from multiembed.workers import default_workers

    folder = Path(tempfile.mkdtemp(prefix="multiembed-bench-"))
    paths = synthetic_jpegs(folder, args.images)
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
            for start in range(0, len(paths), args.batch_size):
                batch = [
                    transform(Image.open(p).convert("RGB")) for p in paths[start : start + args.batch_size]
                ]
                outputs.append(torch.nn.functional.normalize(model(torch.stack(batch)), dim=-1))
        return torch.cat(outputs).numpy()

    in_process = multiembed.load("image", str(weights), device="cpu", batch_size=args.batch_size, workers=0)
    default = default_workers("cpu")
    workers = max(1, default)  # always measure the worker path, even where the default is none
    with_workers = multiembed.load(
        "image", str(weights), device="cpu", batch_size=args.batch_size, workers=workers
    )

    def multiembed_in_process() -> np.ndarray:
        return in_process.encode(paths, progress=False).vectors

    def multiembed_workers() -> np.ndarray:
        return with_workers.encode(paths, progress=False).vectors

    reference = naive_loop()  # warm-up and correctness check
    difference = max(np.abs(reference - run()).max() for run in (multiembed_in_process, multiembed_workers))
    print(
        f"{args.images} JPEGs 640x480, ResNet-50 fp32, batch {args.batch_size}, "
        f"torch threads {torch.get_num_threads()}, cores {os.cpu_count()}, default workers here {default}"
    )
    print(f"max abs difference to the naive loop (normalised vectors): {difference:.2e}")
    timings = alternate(
        {
            "naive loop": naive_loop,
            "multiembed workers=0": multiembed_in_process,
            f"multiembed workers={workers}": multiembed_workers,
        },
        args.rounds,
    )
    # one block of rates, then a ratio per multiembed run: this machine's default first
    candidates = dict.fromkeys([f"multiembed workers={n}" for n in (default, 0, workers)])
    report(timings, args.images, "images", "naive loop", list(candidates))


if __name__ == "__main__":
    main()
