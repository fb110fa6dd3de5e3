"""Video modality: which frames are sampled, Perceiver and CLIP frame-pooling parity, bad files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import multiembed
from multiembed import InputError
from multiembed.cli import main
from multiembed.video import read_video
from tests.media_files import frame_level, tone, write_audio, write_video

PARITY = 1e-5


def sampled_indices(images: list[np.ndarray]) -> list[int]:
    """Read back which source frame each sampled image is, from its grey level."""
    return [round((float(image.mean()) - 8) / 12) for image in images]


@pytest.mark.parametrize(("suffix", "frames", "count", "expected"), [
    (".mp4", 64, 16, [(4 * i + 2) % 20 for i in range(16)]),   # centres of 16 slices of 64 frames
    (".webm", 40, 8, [(5 * i + 2) % 20 for i in range(8)]),
    (".mov", 40, 8, [(5 * i + 2) % 20 for i in range(8)]),
    (".avi", 40, 8, [(5 * i + 2) % 20 for i in range(8)]),
    (".mp4", 3, 8, [0, 0, 0, 1, 1, 2, 2, 2]),                     # shorter than the sample: repeats
])  # fmt: skip
def test_frames_are_sampled_uniformly_by_time(tmp_path, suffix, frames, count, expected):
    with_sound = suffix in (".mp4", ".mov")
    path = write_video(tmp_path / f"v{suffix}", frames, audio=with_sound)
    images, sound = read_video(path, count, audio_rate=16000)
    assert len(images) == count and images[0].shape == (64, 64, 3)
    assert sampled_indices(images) == expected
    assert (sound is not None) == with_sound


def test_levels_are_distinct():
    assert len({frame_level(i) for i in range(20)}) == 20


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return [
        write_video(folder / "a.mp4", 32),
        write_video(folder / "b.webm", 12, audio=False),
        write_video(folder / "c.mp4", 5),
    ]


def test_perceiver_matches_the_full_model_hidden_states(media_models, videos):
    from transformers import PerceiverForMultimodalAutoencoding

    encoder = multiembed.load("video", str(media_models["perceiver"]), device="cpu", workers=0)
    ours = encoder.encode(videos).vectors
    model = PerceiverForMultimodalAutoencoding.from_pretrained(media_models["perceiver"]).eval()
    expected = []
    for video in videos:
        clip = encoder.load(video, "document").raw  # the same inputs: 4 frames, 32x32, 256 samples
        inputs = {
            "image": torch.from_numpy(clip.frames)[None],
            "audio": torch.from_numpy(clip.audio)[None],
            "label": torch.zeros(1, 700),
        }
        points = {"image": torch.arange(4), "audio": torch.arange(4), "label": None}  # cheap decoder
        with torch.inference_mode():
            output = model(inputs=inputs, subsampled_output_points=points, output_hidden_states=True)
        expected.append(torch.nn.functional.normalize(output.hidden_states[-1][0].mean(dim=0), dim=-1))
    assert ours.shape == (3, 16)
    assert np.abs(ours - torch.stack(expected).numpy()).max() <= PARITY


def test_perceiver_inputs(media_models, videos):
    encoder = multiembed.load("video", str(media_models["perceiver"]), device="cpu", workers=0)
    with_sound = encoder.load(videos[0], "document").raw
    silent = encoder.load(videos[1], "document").raw
    assert (
        with_sound.frames.shape == (4, 3, 32, 32)
        and 0 <= with_sound.frames.min() <= with_sound.frames.max() <= 1
    )
    assert with_sound.audio.shape == silent.audio.shape == (256, 1)
    assert np.abs(with_sound.audio).max() > 0.1 and not silent.audio.any()  # silence when no track


def test_clip_frame_pooling_is_the_mean_of_image_text_vectors(image_models, videos):
    video_encoder = multiembed.load("video", str(image_models["clip"]), device="cpu", workers=0)
    image_text = multiembed.load("image-text", str(image_models["clip"]), device="cpu", workers=0)
    ours = video_encoder.encode(videos).vectors
    for video, vector in zip(videos, ours, strict=True):
        frames, _ = read_video(video, 8)
        per_frame = np.stack(image_text.encode_documents([Image.fromarray(f) for f in frames]))
        expected = per_frame.mean(axis=0) / np.linalg.norm(per_frame.mean(axis=0))
        assert np.abs(vector - expected).max() <= PARITY
    query = video_encoder.encode_queries(["a red bicycle"])[0]
    np.testing.assert_allclose(query, image_text.encode_queries(["a red bicycle"])[0], atol=1e-6)


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-videos")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "corrupt.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 8)
    write_audio(folder / "sound.m4a", tone(1.0), 16000).rename(folder / "audio_only.mp4")
    good = write_video(folder / "good.mp4", 30)
    (folder / "truncated.mp4").write_bytes(good.read_bytes()[:600])
    return folder


@pytest.mark.parametrize(("name", "reason"), [
    ("empty.mp4", "empty file"),
    ("corrupt.mkv", "cannot open video"),
    ("audio_only.mp4", "no video stream"),
    ("truncated.mp4", "video"),
])  # fmt: skip
def test_bad_videos_are_item_errors(image_models, bad_videos, name, reason):
    encoder = multiembed.load("video", str(image_models["clip"]), device="cpu", workers=0)
    with pytest.raises(InputError, match=reason):
        encoder.encode_documents([bad_videos / name])


def test_video_modality_refuses_other_models(tiny_models):
    with pytest.raises(multiembed.ModelNotFoundError, match="Perceiver or a CLIP"):
        multiembed.load("video", str(tiny_models["mean"]))


def test_cli_folder_of_videos(media_models, bad_videos, tmp_path, capsys):
    out = tmp_path / "videos.jsonl"
    model = str(media_models["perceiver"])
    code = main(
        ["encode", "-m", "video", str(bad_videos), "-o", str(out), "--model", model, "--workers", "1", "-q"]
    )
    assert code == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["source"] for row in rows] == [str(bad_videos / "good.mp4")]
    err = capsys.readouterr().err
    assert "audio_only.mp4: no video stream" in err and "empty.mp4: empty file" in err
    assert "embedded 1 of 5 items, 4 failed" in err
