"""The audio encoder on OpenVINO: one dynamic Whisper core for the exact mode and every ``pad_seconds``.

A tiny Whisper (random weights, saved as users' models are) is built per test in its own directory,
so every export is written next to it (or in a temporary MULTIEMBED_CACHE), never to the user's cache.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import multiembed
import multiembed.audio_windows as audio_windows
from multiembed.cpu import cpu_features
from multiembed.fast import MIN_COSINE, LowQualityWarning
from multiembed.fast.audio_corpus import sample_clips
from tests.media_files import write_audio
from tests.tiny_models import tiny_whisper_dir

pytest.importorskip("openvino")
pytest.importorskip("nncf")

RATE = 16000
#: OpenVINO float32 against torch float32 on the tiny Whisper: measured 6e-8 (exact mode and pad 2)
PARITY = 1e-5


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("MULTIEMBED_CACHE", str(cache))
    cpu_features.cache_clear()
    yield cache
    cpu_features.cache_clear()  # a test's MULTIEMBED_CPU_FEATURES must not outlive it


@pytest.fixture
def whisper(tmp_path: Path) -> Path:
    return tiny_whisper_dir(tmp_path / "models")


def clips() -> list[tuple[np.ndarray, int]]:
    """Drawn 2-10 s clips (not the gate's: another seed), a 0.7 s one, and a 45 s one (30 + 15 s windows)."""
    long = np.random.default_rng(1).normal(0, 0.1, 45 * RATE).astype(np.float32)
    short = np.sin(2 * np.pi * 440 * np.arange(int(0.7 * RATE)) / RATE).astype(np.float32)
    return [*sample_clips(5, seed=3), (short, RATE), (long, RATE)]


def load(path: Path, **options: object) -> multiembed.Encoder:
    return multiembed.load("audio", str(path), device="cpu", workers=0, **options)


def test_openvino_float32_equals_torch(whisper):
    """Whisper's own 30 s windows: the core runs every window length and pooled width it is given."""
    exact, fast = load(whisper), load(whisper, backend="openvino")
    reference = exact.encode(clips(), progress=False).vectors
    vectors = fast.encode(clips(), progress=False).vectors
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape == (7, 32)
    assert np.abs(vectors - reference).max() <= PARITY
    assert str(fast.policy) == "cpu openvino float32" and fast.config()["backend"] == "openvino"
    report = fast.fast_report
    assert report is not None and report["quality"]["min_cosine"] > 0.99999
    assert (report["quality"]["items"], report["quality"]["queries"]) == (36, 12)


def test_pad_seconds_composes_with_openvino(whisper):
    """pad 2: windows of 1-10 s in one batch, one core call per length; the same vectors as torch."""
    exact, fast = load(whisper, pad_seconds=2), load(whisper, pad_seconds=2, backend="openvino")
    assert fast.config()["options"]["pad_seconds"] == 2
    batch = fast.preprocess([fast.load(clip, "document").raw for clip in clips()], "document")
    assert len(batch["groups"]) > 3  # several window lengths, each its own core call
    reference = exact.encode(clips(), progress=False, batch_size=8).vectors
    assert np.abs(fast.encode(clips(), progress=False, batch_size=8).vectors - reference).max() <= PARITY


def test_a_streamed_long_file_runs_the_core_window_by_window(whisper, tmp_path, monkeypatch):
    path = write_audio(tmp_path / "long.wav", np.random.default_rng(3).normal(0, 0.1, 70 * RATE), RATE)
    monkeypatch.setattr(audio_windows, "EAGER_WINDOWS", 1)  # 70 s: streamed in the main process
    exact, fast = load(whisper, pad_seconds=10), load(whisper, pad_seconds=10, backend="openvino")
    assert isinstance(fast.load(path, "document").raw, audio_windows.AudioFile)
    reference = exact.encode_documents([path])[0]
    assert np.abs(fast.encode_documents([path])[0] - reference).max() <= PARITY


def test_the_fast_slot_round_trips(whisper):
    """What the slot reads back can be put back (as the gate's sample does) without wrapping it twice."""
    fast = load(whisper, pad_seconds=10, backend="openvino")
    runner = fast.fast
    assert runner is not None
    fast.fast = runner
    assert fast.fast is not None and fast.fast.core is runner.core
    fast.fast = None
    assert fast.fast is None
    fast.fast = runner.core
    vector = fast.encode(clips()[:1], progress=False).vectors
    assert (
        np.abs(vector - load(whisper, pad_seconds=10).encode(clips()[:1], progress=False).vectors).max()
        <= PARITY
    )


def test_export_is_written_once_and_reused(whisper, own_cache):
    first = load(whisper, pad_seconds=10, backend="openvino")
    entry = Path(first.fast_report["cache"])
    assert entry.parent == whisper / "openvino" and first.fast_report["reused"] is False
    assert not own_cache.exists()
    written = {path.name: path.stat().st_mtime_ns for path in entry.iterdir()}
    second = load(whisper, pad_seconds=10, backend="openvino")
    assert second.fast_report["reused"] is True and Path(second.fast_report["cache"]) == entry
    assert {path.name: path.stat().st_mtime_ns for path in entry.iterdir()} == written
    assert second.fast_report["quality"] == first.fast_report["quality"]  # read back, not measured again
    other = load(whisper, pad_seconds=2, backend="openvino")  # each mode is calibrated and gated on its own
    assert other.fast_report["reused"] is False and Path(other.fast_report["cache"]) != entry


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["int8", "bfloat16"])
def test_int8_and_bfloat16_go_through_the_gate(whisper, dtype):
    """The report's numbers decide ``passed`` and the warning; they are kept beside the export."""
    if dtype == "bfloat16" and not cpu_features().bf16:
        pytest.skip("no AVX512-BF16 or AMX: bfloat16 is refused on this CPU")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = load(whisper, pad_seconds=10, backend="openvino", dtype=dtype)
    report = fast.fast_report
    quality = report["quality"]
    assert report["dtype"] == dtype and fast.config()["dtype"] == dtype
    assert 0 < quality["min_cosine"] <= quality["mean_cosine"] <= 1.0 + 1e-9
    assert quality["passed"] == report["passed"] == (quality["min_cosine"] >= MIN_COSINE)
    assert bool([w for w in caught if issubclass(w.category, LowQualityWarning)]) == (not quality["passed"])
    saved = json.loads((Path(report["cache"]) / f"gate-{dtype}.json").read_text())
    assert saved["quality"] == quality
    exact = load(whisper, pad_seconds=10).encode(clips(), progress=False).vectors
    vectors = fast.encode(clips(), progress=False).vectors
    cosines = (exact * vectors).sum(axis=1)  # both unit length
    assert cosines.min() > 0.9  # close to exact, within what quantization or bf16 rounding allows


@pytest.mark.slow
def test_auto_picks_a_mode_that_passes(whisper, monkeypatch):
    monkeypatch.setenv("MULTIEMBED_CPU_FEATURES", "avx2,fma")  # torch fp32, openvino fp32 and int8
    cpu_features.cache_clear()
    encoder = load(whisper, pad_seconds=10, backend="auto")
    measured = {(row["backend"], row["dtype"]): row for row in encoder.fast_report["measured"]}
    assert set(measured) == {("torch", "float32"), ("openvino", "float32"), ("openvino", "int8")}
    chosen = (encoder.config()["backend"], encoder.config()["dtype"])
    assert measured[chosen]["passed"]
    again = load(whisper, pad_seconds=10, backend="auto")
    assert (again.config()["backend"], again.config()["dtype"]) == chosen
    assert again.fast_report["decision"] == encoder.fast_report["decision"]
