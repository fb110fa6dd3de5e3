"""Audio of any length in bounded memory: long files are streamed, ``max_seconds``, hostile paths."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import multiembed
import multiembed.audio_windows as audio_modality
from multiembed.audio import load_audio
from multiembed.audio_windows import AudioFile, WhisperWindows
from multiembed.sources import expand
from multiembed.video import read_video
from tests.media_files import decode_with_swresample, stereo, tone, write_audio, write_video

PARITY = 1e-5
RATE = 16000
#: peak RSS may grow this much over the import + model load while a 3-hour file is embedded
#: (measured: +180 MB streamed; the whole-file decode it replaces peaked at 6.9 GB)
RSS_HEADROOM_MB = 300


def sparse_wav(path: Path, seconds: int, head: np.ndarray | None = None) -> Path:
    """A 16 kHz 16-bit mono WAV of ``seconds``: the header (and ``head`` samples), the rest a hole
    that reads as zeros (digital silence) without taking disk space."""
    size = seconds * RATE * 2
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
    header = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", size)
    with path.open("wb") as stream:
        stream.write(header)
        if head is not None:
            stream.write((np.clip(head, -1, 1) * 32767).astype("<i2").tobytes())
        stream.truncate(len(header) + size)
    return path


@pytest.fixture(scope="module")
def encoder(media_models):
    return multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=0)


def noise(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * rate)).astype(np.float32)


CHILD = """
import json, resource, sys
from pathlib import Path
import multiembed
encoder = multiembed.load("audio", sys.argv[1], device="cpu", workers=0, batch_size=4)  # 4 windows a pass
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = encoder.encode([Path(sys.argv[2])], progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_kb": baseline, "peak_kb": peak, "errors": [e.reason for e in result.errors],
                  "vector": result.vectors.tolist()}))
"""


@pytest.mark.slow
def test_a_three_hour_file_streams_in_bounded_memory(encoder, media_models, tmp_path):
    """3 h of 16 kHz audio (345 MB) is 360 windows; read whole it peaked at 6.9 GB RSS. Streamed,
    the child's peak stays within RSS_HEADROOM_MB of its import + model load (about 760 MB here).
    Measured: +180 MB for 3 h, +160 MB for 10 min (log-mel and attention buffers, not the length)."""
    path = sparse_wav(tmp_path / "three-hours.wav", 3 * 3600)
    assert path.stat().st_size == 345_600_044 and path.stat().st_blocks * 512 < 1 << 20  # sparse
    assert isinstance(encoder.load(path, "document").raw, AudioFile)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(media_models["whisper"]), str(path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    grown_mb = (report["peak_kb"] - report["baseline_kb"]) / 1024
    assert grown_mb < RSS_HEADROOM_MB, report
    # 360 full windows of silence, each the same: the vector of one 30 s window of silence
    window = encoder.encode_documents([(np.zeros(30 * RATE, dtype=np.float32), RATE)])[0]
    np.testing.assert_allclose(report["vector"][0], window, atol=PARITY)


@pytest.mark.parametrize("eager_windows", [4, 0])  # decoded in the loader / streamed in forward
def test_max_seconds_embeds_only_the_first_seconds(media_models, tmp_path, monkeypatch, eager_windows):
    monkeypatch.setattr(audio_modality, "EAGER_WINDOWS", eager_windows)
    head = noise(70.0, seed=5)  # then 3 h of silence, which must not be read
    long = sparse_wav(tmp_path / "long.wav", 3 * 3600, head)
    cut = write_audio(tmp_path / "cut.wav", head[: 60 * RATE], RATE)
    minute = multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=0, max_seconds=60)
    assert minute.config()["options"]["max_seconds"] == 60
    result = minute.encode([long, cut, (head, RATE)])
    assert result.errors == []
    vectors = result.vectors
    np.testing.assert_allclose(vectors[0], vectors[1], atol=PARITY)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=PARITY)
    whole = multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=0)
    assert whole.config()["options"]["max_seconds"] is None
    assert np.abs(whole.encode_documents([cut])[0] - vectors[0]).max() <= PARITY
    assert np.abs(whole.encode_documents([(head, RATE)])[0] - vectors[0]).max() > 1e-3


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (RATE, 1)])
def test_streamed_file_equals_the_eager_decode(encoder, tmp_path, monkeypatch, rate, channels):
    """A 70 s file streamed window by window (soxr's streaming resampler, flushed at the end) gives
    the vector of the whole file decoded, resampled at once and cut into windows."""
    samples = stereo(70.0, rate) + noise(70.0, rate)[:, None] if channels == 2 else noise(70.0, rate, seed=2)
    path = write_audio(tmp_path / f"clip{rate}.wav", samples, rate)
    eager = encoder.load(path, "document").raw
    assert isinstance(eager, WhisperWindows) and list(eager.frames) == [1500, 1500, 500]
    whole, _ = load_audio(path, RATE)  # read whole, resampled in one call
    monkeypatch.setattr(audio_modality, "EAGER_WINDOWS", 1)
    assert isinstance(encoder.load(path, "document").raw, AudioFile)
    streamed, reference = encoder.encode_documents([path, (whole, RATE)])
    assert np.abs(streamed - reference).max() <= PARITY
    monkeypatch.setattr(audio_modality, "EAGER_WINDOWS", 4)
    assert np.abs(encoder.encode_documents([path])[0] - streamed).max() <= PARITY


def test_fifos_devices_and_big_files_are_item_errors(media_models, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_audio(clips / "a.wav", tone(1.0), RATE)
    write_audio(clips / "b.flac", tone(1.5, frequency=220), RATE)
    os.mkfifo(clips / "f.wav")  # no writer: opening it blocking would hang forever
    (clips / "z.wav").symlink_to("/dev/zero")  # read whole, it never ends
    sounds = multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=1)

    def give_up(signum, frame):
        raise TimeoutError("encoding a FIFO or a device hung")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(60)
    try:
        result = sounds.encode(expand("audio", str(clips)), progress=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.sources == [str(clips / "a.wav"), str(clips / "b.flac")]
    assert {(Path(e.source).name, e.reason) for e in result.errors} == {
        ("f.wav", "not a regular file (a FIFO)"),
        ("z.wav", "not a regular file (a character device)"),
    }
    small = multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=0, max_bytes=1000)
    errors = small.encode([clips / "a.wav", (clips / "a.wav").read_bytes()]).errors
    assert [e.reason.split(":")[0] for e in errors] == ["file too large"] * 2
    with pytest.raises(multiembed.ConfigError, match="max_seconds"):
        multiembed.load("audio", str(media_models["whisper"]), device="cpu", max_seconds=0)


def test_a_long_video_sound_track_is_read_around_its_middle(tmp_path):
    """Past a minute, only 10 s around the middle are decoded (after a seek): the same samples as
    the middle of a full decode."""
    video = write_video(tmp_path / "long.mp4", 96, fps=1, audio=True, pattern=True)  # 96 s, a chirp
    _, sound = read_video(video, 4, audio_rate=RATE)
    assert sound is not None and abs(len(sound) - 10 * RATE) <= 1024
    full = decode_with_swresample(video, RATE)
    middle = len(full) // 2
    offset = middle - len(sound) // 2
    centre = slice(len(sound) // 2 - RATE, len(sound) // 2 + RATE)  # the middle 2 s
    assert abs(offset - (len(full) - 10 * RATE) // 2) <= 1024
    shifts = [np.abs(full[offset + k :][: len(sound)][centre] - sound[centre]).max() for k in range(-2, 3)]
    assert min(shifts) <= PARITY, shifts
    short = write_video(tmp_path / "short.mp4", 16, audio=True, pattern=True)
    _, whole = read_video(short, 4, audio_rate=RATE)
    assert whole is not None and np.abs(whole - decode_with_swresample(short, RATE)).max() <= PARITY
