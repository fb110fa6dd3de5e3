"""Video throughput and memory: multiembed vs a reference pipeline on a 2-minute video.

    python benchmarks/video.py [--seconds 120] [--rounds 3] [--quick]

A synthetic 2-minute 320x240 25 fps video with sound, and a Perceiver-sized encoder (random weights,
deepmind/multimodal-perceiver's shape: 784 latents x 512, 8 self-attention layers, 16 frames of
224x224, 30,720 audio samples), run encoder-only by both. The reference decodes the whole video
with PyAV, keeps every frame, picks 16 evenly spaced ones and takes the middle 0.64 s of sound;
multiembed seeks to 16 timestamps. Reports clips/s, the ratio (target >= 1.0), and the peak memory
of the decode stage (resident memory, each pipeline in a fresh process): multiembed must not hold the video.
Takes about 1.5 minutes on a 2-core CPU; --quick (a 20 s video, 2 rounds) about 30 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from _common import add_quick, alternate, apply_sizes, report

FULL = {"seconds": 120, "rounds": 3}
QUICK = {"seconds": 20, "rounds": 2}


def make_video(path: Path, seconds: int) -> Path:
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        sound = container.add_stream("aac", rate=48000, layout="mono")
        base = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        for index in range(seconds * 25):
            pixels = np.roll(base, index, axis=1)
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(seconds * 48000) / 48000)).astype(np.float32)
        for start in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = 48000
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)
    return path


STAGE = """
import sys
from pathlib import Path
sys.path[:0] = {paths!r}
import video as bench
import multiembed
from multiembed.modalities.video import PerceiverLoader
loader = PerceiverLoader(num_frames=16, image_size=224, audio_samples=30720, audio_rate=48000)
def status(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field))
    return int(line.split()[1]) / 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS:")
bench.reference_inputs(Path({video!r})) if {which!r} == "reference" else loader(Path({video!r}))
print(status("VmHWM:") - before)
"""


def decode_peak_mib(which: str, video: Path) -> float:
    """Growth of the peak resident memory while one pipeline decodes, in a fresh process."""
    import subprocess

    code = STAGE.format(paths=sys.path[:2], video=str(video), which=which)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def reference_inputs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The naive way: decode every frame, keep them all, pick 16; the middle 0.64 s of sound."""
    import av
    from PIL import Image

    from multiembed.audio import _decode_container, resample

    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    picks = [frames[int((i + 0.5) * len(frames) / 16)] for i in range(16)]
    images = np.stack([np.asarray(Image.fromarray(f).resize((224, 224), Image.BILINEAR)) for f in picks])
    samples, rate = _decode_container(path)
    sound = resample(samples, rate, 48000)
    start = (len(sound) - 30720) // 2
    return images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0, sound[start : start + 30720, None]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, help="length of the video (default 120)")
    parser.add_argument("--rounds", type=int, help="default 3")
    add_quick(parser, QUICK)
    args = parser.parse_args()
    apply_sizes(args, FULL, QUICK)

    import torch
    from transformers import PerceiverConfig, PerceiverForMultimodalAutoencoding

    import multiembed
    from multiembed.cli.common import quiet_libraries

    quiet_libraries()  # no weight-loading bars or library warnings between the result lines
    folder = Path(tempfile.mkdtemp(prefix="multiembed-video-"))
    video = make_video(folder / "two-minutes.mp4", args.seconds)
    torch.manual_seed(0)
    config = PerceiverConfig(num_latents=784, d_latents=512, num_blocks=1, num_self_attends_per_block=8,
                             num_self_attention_heads=8, num_cross_attention_heads=1, image_size=224,
                             num_frames=16, audio_samples_per_frame=1920, samples_per_patch=16,
                             output_shape=[1, 16, 224, 224], num_labels=700)  # fmt: skip
    PerceiverForMultimodalAutoencoding(config).eval().save_pretrained(folder / "perceiver")

    encoder = multiembed.load("video", str(folder / "perceiver"), device="cpu", workers=0)
    perceiver = encoder.module

    def reference() -> np.ndarray:
        images, sound = reference_inputs(video)
        inputs = {"image": torch.from_numpy(images)[None], "audio": torch.from_numpy(sound)[None],
                  "label": torch.zeros(1, 700)}  # fmt: skip
        with torch.inference_mode():
            latents = perceiver(inputs=inputs).last_hidden_state
        return torch.nn.functional.normalize(latents.mean(dim=1), dim=-1).numpy()

    def run_multiembed() -> np.ndarray:
        return encoder.encode([video], progress=False).vectors

    difference = np.abs(reference() - run_multiembed()).max()
    reference_peak, ours_peak = decode_peak_mib("reference", video), decode_peak_mib("multiembed", video)
    size = video.stat().st_size / 2**20
    print(f"{args.seconds} s video, {args.seconds * 25} frames 320x240, file {size:.1f} MiB; Perceiver-sized "
          f"encoder, fp32, torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"max abs difference between the pipelines: {difference:.2e}")
    print(f"decode-stage peak RSS growth: reference {reference_peak:.0f} MiB, multiembed {ours_peak:.0f} MiB")
    timings = alternate({"reference (decode all)": reference, "multiembed": run_multiembed}, args.rounds)
    report(timings, 1, "clips", "reference (decode all)", "multiembed")


if __name__ == "__main__":
    main()
