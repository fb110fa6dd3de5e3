"""The audio fast mode (``pad_seconds``): Whisper's encoder on the real seconds of a clip, not 30 s."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import multiembed
import multiembed.audio_windows as audio_modality
from multiembed import ConfigError, SchemaMismatchError
from multiembed.audio_windows import AudioFile, WhisperWindows
from multiembed.milvus import MilvusStore
from tests.media_files import write_audio

PARITY = 1e-5
RATE = 16000


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * RATE)).astype(np.float32)


def chirp(seconds: float, low: float = 200.0, high: float = 3000.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * (low + (high - low) * t / seconds / 2) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def exact(media_models):
    return multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=0)


@pytest.fixture(scope="module")
def fast(media_models):
    """Padded to at least 2 s: most test clips run on their own (rounded-up) seconds."""
    return multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=0, pad_seconds=2)


@pytest.fixture(scope="module")
def reference(media_models):
    """Whisper's submodules run by hand on the first 2P mel frames of the usual 30 s features."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    extractor = WhisperFeatureExtractor.from_pretrained(media_models["whisper"])
    encoder = WhisperModel.from_pretrained(media_models["whisper"]).eval().encoder

    def vector(samples: np.ndarray, positions: int) -> np.ndarray:
        features = extractor(samples, sampling_rate=RATE, return_tensors="pt")["input_features"]
        with torch.inference_mode():
            hidden = torch.nn.functional.gelu(encoder.conv1(features[:, :, : 2 * positions]))
            hidden = torch.nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
            hidden = hidden + encoder.embed_positions.weight[:positions]
            for layer in encoder.layers:
                hidden = layer(hidden, None)
            hidden = encoder.layer_norm(hidden)[0]
        frames = math.ceil(len(samples) / 320)
        return torch.nn.functional.normalize(hidden[:frames].mean(dim=0), dim=-1).numpy()

    return vector


@pytest.mark.parametrize(
    ("seconds", "pad_seconds", "positions"),
    [(3.3, 2, 200), (3.3, 10, 500), (0.7, 2, 100), (4.0, 2.5, 200), (1.1, 2.5, 125)],
)
def test_fast_mode_runs_the_encoder_on_the_real_seconds(
    media_models, reference, seconds, pad_seconds, positions
):
    """The real frames rounded up to whole seconds, at least ``pad_seconds``: 3.3 s runs on 4 s."""
    clip = chirp(seconds) + noise(seconds, seed=1)
    encoder = multiembed.load(
        "audio", str(media_models["whisper"]), device="cpu", workers=0, pad_seconds=pad_seconds
    )
    loaded = encoder.load((clip, RATE), "document").raw
    assert isinstance(loaded, WhisperWindows) and [f.shape[-1] for f in loaded.features] == [2 * positions]
    ours = encoder.encode_documents([(clip, RATE)])[0]
    assert np.abs(ours - reference(clip, positions)).max() <= PARITY


def test_a_30s_clip_gives_the_same_vector_in_both_modes(exact, fast, reference):
    clip = noise(30.0, seed=2)
    vector = exact.encode_documents([(clip, RATE)])[0]
    assert np.abs(fast.encode_documents([(clip, RATE)])[0] - vector).max() <= PARITY
    assert np.abs(reference(clip, 1500) - vector).max() <= PARITY  # the hand-run reference is Whisper's


def test_fast_and_exact_differ_on_short_clips(exact, fast):
    """Attending to 28 s of padding or not changes the vectors: the two modes are different spaces."""
    clip = chirp(2.0)
    assert (
        np.abs(exact.encode_documents([(clip, RATE)])[0] - fast.encode_documents([(clip, RATE)])[0]).max()
        > 1e-3
    )


def test_mixed_lengths_batched_equal_one_by_one(fast):
    """Windows run in groups of equal length; a 40 s clip is a 30 s window plus a 10 s one."""
    clips = [
        (noise(seconds, seed), RATE) for seed, seconds in enumerate([1.0, 2.5, 12.0, 40.0, 3.7, 2.2, 2.4])
    ]
    together = np.stack(fast.encode(clips, batch_size=8).vectors)
    alone = np.stack([fast.encode_documents([clip])[0] for clip in clips])
    np.testing.assert_allclose(together, alone, atol=PARITY)


def test_a_long_file_streamed_equals_its_eager_decode(fast, tmp_path, monkeypatch):
    path = write_audio(tmp_path / "long.wav", noise(70.0, seed=3), RATE)  # windows of 30, 30 and 10 s
    eager = fast.load(path, "document").raw
    assert isinstance(eager, WhisperWindows) and [f.shape[-1] for f in eager.features] == [3000, 3000, 1000]
    vector = fast.encode_documents([path])[0]
    monkeypatch.setattr(audio_modality, "EAGER_WINDOWS", 1)
    assert isinstance(fast.load(path, "document").raw, AudioFile)
    assert np.abs(fast.encode_documents([path])[0] - vector).max() <= PARITY


def test_the_pad_is_part_of_the_identity(media_models, exact, fast, tmp_path):
    assert exact.config()["options"]["pad_seconds"] is None
    assert fast.config()["options"]["pad_seconds"] == 2
    whole = multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=0, pad_seconds=30)
    assert whole.config() == exact.config()  # padded to the whole window is the exact mode
    uri = str(tmp_path / "sounds.db")
    clips = [(chirp(2.0), RATE), (noise(3.0), RATE)]
    with MilvusStore(uri, "sounds", fast) as store:
        assert store.add(clips).added == 2
    with MilvusStore(uri, "sounds", device="cpu", workers=0) as reopened:  # the recorded pad applies
        assert reopened.encoder.config()["options"]["pad_seconds"] == 2
    with pytest.raises(SchemaMismatchError, match="pad_seconds: collection has 2, encoder has None"):
        MilvusStore(uri, "sounds", exact)
    with pytest.raises(SchemaMismatchError, match="pad_seconds: collection has 2, encoder has 5"):
        MilvusStore(uri, "sounds", device="cpu", workers=0, pad_seconds=5)


@pytest.mark.parametrize("value", [0, -1, True, "10"])
def test_bad_pad_seconds_is_a_config_error(media_models, value):
    with pytest.raises(ConfigError, match="pad_seconds must be a number > 0 or None"):
        multiembed.load("audio", str(media_models["whisper"]), device="cpu", pad_seconds=value)
