"""Audio given as bytes (the server's uploads, the Python API) in the bounded memory of a file path.

Bytes once were decoded whole into windows: 8 h of silent FLAC (729 KB) took 3 GB, and a 40 KB WAV
whose header says 1 Hz stands for 5.5 h. They now take the path's route: a long clip is decoded
from an in-memory buffer as a stream, a few windows per encoder pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import multiembed
import multiembed.audio_windows as audio_windows
from multiembed.audio import load_audio, resampled
from multiembed.audio_windows import AudioFile, WhisperWindows
from tests.media_files import stereo, write_audio

PARITY = 1e-5
RATE = 16000


@pytest.fixture(scope="module")
def encoder(media_models):
    return multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=0)


def silent_flac(path: Path, seconds: int) -> Path:
    """Digital silence as FLAC, written 10 minutes at a time: about 180 KB per hour on disk."""
    import soundfile

    block = np.zeros(600 * RATE, dtype=np.int16)
    with soundfile.SoundFile(path, "w", RATE, 1, format="FLAC") as stream:
        for _ in range(seconds // 600):
            stream.write(block)
    return path


def one_hertz_wav(path: Path, samples: int) -> Path:
    """A WAV whose header says 1 Hz: ``samples`` of noise stand for as many seconds."""
    import soundfile

    noise = np.random.default_rng(3).normal(0, 0.1, samples).astype(np.float32)
    soundfile.write(path, noise, 1, subtype="PCM_16")
    return path


@pytest.mark.parametrize("eager_windows", [4, 1])  # decoded in the loader / streamed in forward
def test_bytes_give_the_vector_of_the_same_file(encoder, tmp_path, monkeypatch, eager_windows):
    """70 s (three windows) of 44.1 kHz stereo: bytes and path are one clip, window for window."""
    monkeypatch.setattr(audio_windows, "EAGER_WINDOWS", eager_windows)
    noise = np.random.default_rng(7).normal(0, 0.1, (70 * 44100, 2)).astype(np.float32)
    path = write_audio(tmp_path / "clip.flac", stereo(70.0, 44100) + noise, 44100)
    data = path.read_bytes()
    from_path, from_bytes = encoder.load(path, "document"), encoder.load(data, "document")
    assert from_path.key == from_bytes.key
    if eager_windows == 1:
        assert isinstance(from_bytes.raw, AudioFile) and from_bytes.raw.data == data
        assert from_bytes.raw.frames == from_path.raw.frames
        assert "data" not in repr(from_bytes.raw)  # an error message never dumps the upload
    else:
        assert isinstance(from_bytes.raw, WhisperWindows) and list(from_bytes.raw.frames) == [1500, 1500, 500]
    by_path, by_bytes, by_view = encoder.encode_documents([path, data, memoryview(data)])
    assert np.abs(by_path - by_bytes).max() <= PARITY
    assert np.abs(by_view - by_bytes).max() <= PARITY
    whole, _ = load_audio(path, RATE)  # decoded and resampled in one call
    assert np.abs(encoder.encode_documents([(whole, RATE)])[0] - by_bytes).max() <= PARITY


def test_streamed_bytes_cross_worker_processes(media_models, tmp_path, monkeypatch):
    """A long upload loaded in a worker comes back with its bytes and streams in the main process."""
    monkeypatch.setattr(audio_windows, "EAGER_WINDOWS", 1)
    path = write_audio(tmp_path / "clip.wav", np.random.default_rng(8).normal(0, 0.1, 70 * RATE), RATE)
    pooled = multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=1, batch_size=1)
    result = pooled.encode([path.read_bytes(), path], progress=False)
    assert result.errors == []
    assert np.abs(result.vectors[0] - result.vectors[1]).max() <= PARITY


def test_a_low_rate_header_is_resampled_in_bounded_pieces():
    """Upsampling 4000x turns a 4096-sample FLAC frame into 16 M samples in one soxr call (at 1 Hz,
    65 M: 262 MB); fed in pieces, a chunk is at most soxr's own block (measured: 3.2 M, where
    unsplit 12.9 M), and the samples are still those of one call over the whole signal."""
    signal = np.random.default_rng(4).normal(0, 0.1, 5000).astype(np.float32)
    chunks = list(resampled([(signal[:4096], 4), (signal[4096:], 4)], RATE))
    assert max(len(chunk) for chunk in chunks) < 4 * RATE**2 // 4  # a quarter of the 16 M
    whole, _ = load_audio((signal, 4), RATE)
    assert np.array_equal(np.concatenate(chunks), whole)


CHILD = """
import json, resource, sys
from pathlib import Path
import multiembed
encoder = multiembed.load("audio", sys.argv[1], device="cpu", workers=0, batch_size=4)  # 4 windows a pass
data = Path(sys.argv[2]).read_bytes()
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = encoder.encode([data], progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_kb": baseline, "peak_kb": peak, "errors": [e.reason for e in result.errors],
                  "vector": result.vectors.tolist()}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "headroom_mb"),
    [
        # 2 h of silent FLAC (240 windows, 363 KB): held whole, +1.0 GB (8 h: +3.4 GB); streamed, +175 MB
        ("silence", 300),
        # 40 KB at 1 Hz, 5.5 h (667 windows): held whole, +2.6 GB; streamed, +440 MB whatever the
        # length, most of it soxr's own buffers for a 16000x ratio (the same for a path)
        ("one-hertz", 700),
    ],
)
def test_a_long_upload_streams_in_bounded_memory(encoder, media_models, tmp_path, kind, headroom_mb):
    if kind == "silence":
        path = silent_flac(tmp_path / "two-hours.flac", 2 * 3600)
        assert path.stat().st_size < 1 << 20
    else:
        path = one_hertz_wav(tmp_path / "one-hertz.wav", 20_000)
        assert path.stat().st_size == 40_044
    loaded = encoder.load(path.read_bytes(), "document").raw
    assert isinstance(loaded, AudioFile) and loaded.path == "" and loaded.frames > 200 * 1500  # not decoded
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(media_models["whisper"]), str(path)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    grown_mb = (report["peak_kb"] - report["baseline_kb"]) / 1024
    assert grown_mb < headroom_mb, {key: value for key, value in report.items() if key != "vector"}
    if kind == "silence":  # 240 full windows of silence: the vector of one 30 s window of silence
        window = encoder.encode_documents([(np.zeros(30 * RATE, dtype=np.float32), RATE)])[0]
        np.testing.assert_allclose(report["vector"][0], window, atol=PARITY)
    else:
        assert abs(np.linalg.norm(report["vector"][0]) - 1.0) < 1e-5
