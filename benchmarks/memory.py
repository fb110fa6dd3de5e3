"""Peak memory of ``multiembed encode`` as the input grows tenfold: it must stay flat.

    python benchmarks/memory.py [--texts 2000] [--images 200] [--format parquet] [--quick]

Each run is a fresh process running the real CLI (``multiembed encode ... -o out.parquet``) that
reports its own peak RSS. Texts: the packaged all-MiniLM-L6-v2 over N and 10 x N short sentences.
Images: N and 10 x N small JPEGs through a tiny Hugging Face ResNet (the pipeline's memory, not the
model's, is what grows with the input; a full ResNet-50 only adds a constant). Target: the 10 x run
peaks less than 100 MB above the 1 x run. Takes about 2 minutes on a 2-core CPU; --quick (200 texts,
64 images, each then tenfold) about 40 s.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_quick, apply_sizes

FULL = {"texts": 2000, "images": 200}
QUICK = {"texts": 200, "images": 64}

_RUN = """
import resource, sys
from multiembed.cli import main
code = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "EXIT", code)
"""


def peak_mb(args: list[str]) -> float:
    """Run the CLI in a fresh process and return its peak resident memory in MB."""
    done = subprocess.run([sys.executable, "-c", _RUN, *args], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("PEAK_KB"):
            fields = line.split()
            if fields[3] != "0":
                raise SystemExit(f"encode exited {fields[3]}: {done.stderr[-1000:]}")
            return int(fields[1]) / 1024
    raise SystemExit(f"no measurement: {done.stderr[-2000:]}")


def write_texts(path: Path, count: int) -> Path:
    words = [
        "a",
        "red",
        "bicycle",
        "leans",
        "against",
        "the",
        "brick",
        "wall",
        "while",
        "the",
        "quick",
        "brown",
        "fox",
        "runs",
        "past",
    ]
    with path.open("w") as stream:
        for index in range(count):
            start = index % len(words)
            stream.write(f"{index} " + " ".join(words[start:] + words[:start]) + "\n")
    return path


def write_images(folder: Path, count: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(buffer, format="JPEG")
        (folder / f"{index:05d}.jpg").write_bytes(buffer.getvalue())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, help="default 2000 (then 10x)")
    parser.add_argument("--images", type=int, help="default 200 (then 10x)")
    parser.add_argument("--format", default="parquet", choices=["parquet", "jsonl", "npy"])
    add_quick(parser, QUICK)
    args = parser.parse_args()
    apply_sizes(args, FULL, QUICK)

    from multiembed.cli.common import quiet_libraries
    from tests.tiny_models import tiny_hf_resnet_dir

    quiet_libraries()  # no "Writing model shards" bar over the table
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model = tiny_hf_resnet_dir(root)
        rows = []
        for count in (args.texts, 10 * args.texts):
            source = write_texts(root / f"texts-{count}.txt", count)
            out = root / f"texts-{count}.{args.format}"
            rows.append(("text", count, peak_mb(["encode", "-m", "text", str(source), "-o", str(out), "-q"])))
        for count in (args.images, 10 * args.images):
            source = write_images(root / f"images-{count}", count)
            out = root / f"images-{count}.{args.format}"
            command = ["encode", "-m", "image", str(source), "--model", str(model), "-o", str(out), "-q"]
            rows.append(("image", count, peak_mb([*command, "--workers", "0"])))
    print(f"{'modality':<8} {'items':>7} {'peak RSS':>10}")
    for modality, count, peak in rows:
        print(f"{modality:<8} {count:>7} {peak:>8.0f} MB")
    for modality in ("text", "image"):
        small, large = (peak for name, _, peak in rows if name == modality)
        print(f"{modality}: 10x the items -> peak grows {large - small:+.0f} MB (target < 100 MB)")


if __name__ == "__main__":
    main()
