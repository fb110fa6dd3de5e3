"""Audio modality: parity with WhisperFeatureExtractor + encoder + masked mean, files, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import multiembed
from multiembed import InputError
from multiembed.audio import load_audio
from multiembed.cli import main
from tests.media_files import decode_with_swresample, stereo, tone, write_audio, write_video

PARITY = 1e-5
RATE = 16000


@pytest.fixture(scope="module")
def encoder(media_models):
    return multiembed.load("audio", str(media_models["whisper"]), device="cpu", workers=0)


@pytest.fixture(scope="module")
def reference(media_models):
    from transformers import WhisperFeatureExtractor, WhisperModel

    extractor = WhisperFeatureExtractor.from_pretrained(media_models["whisper"])
    whisper = WhisperModel.from_pretrained(media_models["whisper"]).eval()

    def window_vector(samples: np.ndarray) -> tuple[torch.Tensor, int]:
        """Un-normalised masked mean over the encoder frames that hold real audio."""
        features = extractor(samples, sampling_rate=RATE, return_tensors="pt")["input_features"]
        with torch.inference_mode():
            hidden = whisper.encoder(input_features=features).last_hidden_state[0]
        frames = math.ceil(len(samples) / 320)
        return hidden[:frames].mean(dim=0), frames

    return window_vector


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * RATE)).astype(np.float32)


def unit(vector: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(vector, dim=-1).numpy()


def test_short_clip_matches_the_reference(encoder, reference):
    clip = noise(2.0)
    expected, frames = reference(clip)
    assert frames == 100
    ours = encoder.encode_documents([(clip, RATE)])[0]
    assert np.abs(ours - unit(expected)).max() <= PARITY


def test_long_clip_is_the_weighted_average_of_its_30s_windows(encoder, reference):
    clip = noise(70.0, seed=1)
    parts = [reference(clip[start : start + 30 * RATE]) for start in range(0, len(clip), 30 * RATE)]
    assert [frames for _, frames in parts] == [1500, 1500, 500]
    weighted = sum(vector * frames for vector, frames in parts) / sum(frames for _, frames in parts)
    ours = encoder.encode_documents([(clip, RATE)])[0]
    assert np.abs(ours - unit(weighted)).max() <= PARITY


def test_batches_mix_clip_lengths_and_keep_order(encoder):
    clips = [(noise(seconds, seed), RATE) for seed, seconds in enumerate([1.0, 40.0, 0.5, 3.0])]
    together = np.stack(encoder.encode_documents(clips))
    alone = np.stack([encoder.encode_documents([clip])[0] for clip in clips])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_padding_does_not_dominate(encoder, reference):
    """A masked mean differs from the plain mean over all 1500 frames, which is mostly padding."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    clip = noise(1.0, seed=3)
    ours = encoder.encode_documents([(clip, RATE)])[0]
    extractor = WhisperFeatureExtractor()
    whisper = WhisperModel.from_pretrained(encoder.model_id).eval()
    with torch.inference_mode():
        features = extractor(clip, sampling_rate=RATE, return_tensors="pt")["input_features"]
        plain = whisper.encoder(input_features=features).last_hidden_state[0].mean(dim=0)
    assert np.abs(ours - unit(plain)).max() > 1e-2


@pytest.mark.filterwarnings("ignore:'(aifc|audioop|sunau)' is deprecated:DeprecationWarning")  # audioread
@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3"])
def test_files_equal_an_independent_libsndfile_decode(encoder, tmp_path, suffix):
    """librosa decodes with libsndfile (mpg123 for mp3, not libavcodec as multiembed), averages the
    two different channels and converts 44.1 kHz to 16 kHz itself; its samples, fed to the same
    encoder, must give the file's vector. wav/flac are lossless, so both decodes are the same numbers.
    For mp3 the two decoders read one bitstream and agree to float rounding (measured: samples within
    5e-7, vectors within 3e-8), so the lossless tolerance holds too; keep it that tight, since this
    tiny random Whisper is insensitive in cosine terms (keeping only the left channel, or skipping
    the resampling, still gives cosine > 0.9997, but moves the vector by 5e-3 to 1e-2)."""
    import librosa

    path = write_audio(tmp_path / f"stereo{suffix}", stereo(2.0, 44100), 44100)
    theirs, rate = librosa.load(path, sr=RATE, mono=True)
    assert rate == RATE and len(theirs) == 2 * RATE
    samples, _ = load_audio(path, RATE)
    np.testing.assert_allclose(samples, theirs, atol=PARITY)
    ours = encoder.encode_documents([path])[0]
    np.testing.assert_allclose(ours, encoder.encode_documents([(theirs, rate)])[0], atol=PARITY)


def test_m4a_equals_an_independent_swresample_decode(encoder, tmp_path):
    """No AAC decoder but libavcodec's is available offline (libsndfile has none, audioread finds no
    backend), so the reference shares the codec with multiembed but nothing after it: swresample's
    sample-format conversion, librosa's channel mean and rate conversion. With the same decoded
    numbers the vectors must agree to float rounding (measured: identical), not just to a loose
    lossy-codec tolerance, which would also pass a wrong downmix or a skipped resampling."""
    path = write_audio(tmp_path / "stereo.m4a", stereo(2.0, 44100), 44100)
    theirs = decode_with_swresample(path, RATE)
    assert abs(len(theirs) - 2 * RATE) < 0.05 * RATE  # plus the AAC encoder's priming and padding
    samples, _ = load_audio(path, RATE)
    np.testing.assert_allclose(samples, theirs, atol=PARITY)
    ours = encoder.encode_documents([path])[0]
    np.testing.assert_allclose(ours, encoder.encode_documents([(theirs, RATE)])[0], atol=PARITY)


def test_wav_file_equals_its_samples(encoder, tmp_path):
    import soundfile

    path = write_audio(tmp_path / "a.wav", noise(2.0, seed=4), RATE)
    samples, rate = soundfile.read(path, dtype="float32")
    np.testing.assert_allclose(
        encoder.encode_documents([path])[0], encoder.encode_documents([(samples, rate)])[0], atol=1e-6
    )


def test_sound_track_of_a_video(encoder, tmp_path):
    with_sound = write_video(tmp_path / "v.mp4", 16, audio=True, pattern=True)  # a chirp
    theirs = decode_with_swresample(with_sound, RATE)  # see the m4a test for why this reference
    np.testing.assert_allclose(
        encoder.encode_documents([with_sound])[0], encoder.encode_documents([(theirs, RATE)])[0], atol=PARITY
    )
    silent = write_video(tmp_path / "silent.mp4", 16, audio=False)
    with pytest.raises(InputError, match="no audio stream in the file"):
        encoder.encode_documents([silent])


def test_digital_silence_is_valid_audio(encoder, reference):
    silence = np.zeros(RATE, dtype=np.float32)
    expected, frames = reference(silence)
    assert frames == 50
    vector = encoder.encode_documents([(silence, RATE)])[0]
    assert np.abs(vector - unit(expected)).max() <= PARITY


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ((np.zeros(0, dtype=np.float32), RATE), "no audio samples (zero length)"),
        (b"", "empty file (0 bytes)"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk" * 10, "cannot decode audio ("),
        ((np.array([np.nan, 0.0], dtype=np.float32), RATE), "audio contains NaN or infinite samples"),
        (42, "expected audio (path, bytes or a (samples, sample_rate) tuple), got int"),
    ],
)
def test_bad_audio_is_an_item_error(encoder, value, reason):
    result = encoder.encode([value])
    assert len(result) == 0 and reason in result.errors[0].reason


def test_cli_folder_with_good_and_bad_files(media_models, tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_audio(clips / "a.wav", tone(1.0), RATE)
    write_audio(clips / "b.mp3", tone(1.5, frequency=220), RATE)
    (clips / "empty.wav").write_bytes(b"")
    (clips / "broken.flac").write_bytes(b"fLaC" + bytes(200))
    write_video(clips / "silent.mp4", 8, audio=False)
    out = tmp_path / "clips.jsonl"
    code = main(["encode", "-m", "audio", str(clips), "-o", str(out), "--model", str(media_models["whisper"]),
                 "--workers", "1", "-q"])  # fmt: skip
    assert code == 1
    assert [json.loads(line)["source"] for line in out.read_text().splitlines()] == [
        str(clips / "a.wav"),
        str(clips / "b.mp3"),
    ]
    err = capsys.readouterr().err
    assert "empty.wav: empty file" in err and "broken.flac: cannot decode audio" in err
    assert "silent.mp4: no audio stream" in err and "embedded 2 of 5 items, 3 failed" in err
