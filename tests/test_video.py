"""Video modality: which frames are sampled, Perceiver and CLIP frame-pooling parity, bad files, CLI."""

from __future__ import annotations

import json
import re

import av
import numpy as np
import pytest
import torch
from PIL import Image

import multiembed
from multiembed import InputError
from multiembed.cli import main
from multiembed.video import read_video
from tests.media_files import (
    centre_frames,
    decode_all_frames,
    decode_with_swresample,
    frame_level,
    pattern_frame,
    tone,
    write_audio,
    write_video,
)

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
    """Colour pattern frames (so resizing, cropping and channel order matter) and a chirp."""
    folder = tmp_path_factory.mktemp("videos")
    return [
        write_video(folder / "a.mp4", 32, pattern=True),
        write_video(folder / "b.webm", 12, audio=False, pattern=True),
        write_video(folder / "c.mp4", 5, pattern=True),  # fewer frames than CLIP's 8: repeats
    ]


def test_independent_frame_extraction_reads_the_written_frames(videos):
    """The references below pick frames by index from a full decode: check that against the writer."""
    for video, count in zip(videos, [32, 12, 5], strict=True):
        frames = decode_all_frames(video)
        assert len(frames) == count and frames[0].shape == (64, 64, 3)
        written = np.stack([pattern_frame(index, 64) for index in range(count)]).astype(int)
        closest = [int(np.abs(written - frame).mean(axis=(1, 2, 3)).argmin()) for frame in frames]
        assert closest == list(range(count)), video.name
    # the same picks as the hand-written expectations of test_frames_are_sampled_uniformly_by_time
    assert centre_frames(list(range(64)), 16) == [4 * i + 2 for i in range(16)]
    assert centre_frames(list(range(40)), 8) == [5 * i + 2 for i in range(8)]
    assert centre_frames(list(range(3)), 8) == [0, 0, 0, 1, 1, 2, 2, 2]


def perceiver_inputs(video, config) -> dict[str, torch.Tensor]:
    """The multimodal Perceiver's inputs for one file, built without multiembed: the centre frames of
    num_frames equal slices, PIL-bilinear resized to image_size, 0..1, CHW; and num_frames x
    audio_samples_per_frame samples of the sound at the model's rate (samples-per-frame x 25 fps,
    Kinetics' rate: 48 kHz for the real model), taken around the middle of the track."""
    size = config.image_size
    frames = centre_frames(decode_all_frames(video), config.num_frames)
    resized = [np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR)) for frame in frames]
    image = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 255.0
    length = config.num_frames * config.audio_samples_per_frame
    audio = np.zeros(length, dtype=np.float32)
    with av.open(str(video)) as container:
        has_sound = bool(container.streams.audio)
    if has_sound:
        sound = decode_with_swresample(video, config.audio_samples_per_frame * 25)
        assert len(sound) > length
        middle = len(sound) // 2
        audio = sound[middle - length // 2 : middle + length // 2]
    return {
        "image": image[None],
        "audio": torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, :, None],
        "label": torch.zeros(1, config.num_labels),
    }


def test_perceiver_matches_transformers_on_independently_decoded_inputs(media_models, videos):
    from transformers import PerceiverForMultimodalAutoencoding

    encoder = multiembed.load("video", str(media_models["perceiver"]), device="cpu", workers=0)
    ours = encoder.encode(videos).vectors
    model = PerceiverForMultimodalAutoencoding.from_pretrained(media_models["perceiver"]).eval()
    points = {"image": torch.arange(4), "audio": torch.arange(4), "label": None}  # cheap decoder
    expected = []
    for video in videos:
        inputs = perceiver_inputs(video, model.config)
        with torch.inference_mode():
            output = model(inputs=inputs, subsampled_output_points=points, output_hidden_states=True)
        latents = output.hidden_states[-1][0]  # the encoder's final latent array [num_latents, d]
        expected.append(torch.nn.functional.normalize(latents.mean(dim=0), dim=-1))
    assert ours.shape == (3, 16)
    assert np.abs(ours - torch.stack(expected).numpy()).max() <= PARITY


def test_clip_frame_pooling_matches_clip_model_on_independently_decoded_frames(image_models, videos):
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    path = image_models["clip"]
    video_encoder = multiembed.load("video", str(path), device="cpu", workers=0)
    ours = video_encoder.encode(videos).vectors
    model = CLIPModel.from_pretrained(path).eval()
    processor = AutoImageProcessor.from_pretrained(path)
    for video, vector in zip(videos, ours, strict=True):
        frames = centre_frames(decode_all_frames(video), 8)  # 8: the CLIP video default
        pixels = processor(images=[Image.fromarray(frame) for frame in frames], return_tensors="pt")
        with torch.inference_mode():
            output = model.get_image_features(pixel_values=pixels["pixel_values"])
        features = output if isinstance(output, torch.Tensor) else output.pooler_output
        mean = torch.nn.functional.normalize(features, dim=-1).mean(dim=0)
        expected = torch.nn.functional.normalize(mean, dim=-1).numpy()
        assert np.abs(vector - expected).max() <= PARITY, video.name
    tokenizer = AutoTokenizer.from_pretrained(path)
    with torch.inference_mode():
        output = model.get_text_features(**tokenizer(["a red bicycle"], return_tensors="pt"))
    features = output if isinstance(output, torch.Tensor) else output.pooler_output
    query = video_encoder.encode_queries(["a red bicycle"])[0]
    np.testing.assert_allclose(query, torch.nn.functional.normalize(features, dim=-1)[0].numpy(), atol=PARITY)


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-videos")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "corrupt.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 8)
    write_audio(folder / "sound.m4a", tone(1.0), 16000).rename(folder / "audio_only.mp4")
    good = write_video(folder / "good.mp4", 30)
    (folder / "truncated.mp4").write_bytes(good.read_bytes()[:600])
    indexed = write_video(folder / "indexed.mp4", 30, audio=False, faststart=True)
    (folder / "cut_frames.mp4").write_bytes(indexed.read_bytes()[: indexed.stat().st_size // 2])
    indexed.unlink()
    return folder


@pytest.mark.parametrize(("name", "reason"), [
    ("empty.mp4", "empty file (0 bytes)"),
    ("corrupt.mkv", "cannot open video (InvalidDataError"),
    ("audio_only.mp4", "no video stream (an audio-only file?)"),
    ("truncated.mp4", "cannot open video (InvalidDataError"),  # cut before the moov atom, at the end
    ("cut_frames.mp4", "corrupt video ("),  # index first, frames cut mid-packet: decoding fails
])  # fmt: skip
def test_bad_videos_are_item_errors(image_models, bad_videos, name, reason):
    encoder = multiembed.load("video", str(image_models["clip"]), device="cpu", workers=0)
    with pytest.raises(InputError, match=re.escape(reason)):
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
    assert "cut_frames.mp4: corrupt video" in err and "truncated.mp4: cannot open video" in err
    assert "embedded 1 of 6 items, 5 failed" in err
