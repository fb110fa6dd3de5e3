"""The examples run as written, offline, with a local model directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.image_files import bad_images, good_images

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.slow  # each example is a fresh interpreter (seconds of imports)


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_photo_search(image_models, tmp_path):
    photos = tmp_path / "photos"
    good = good_images(photos)
    bad_images(photos)
    done = run_example(
        "photo_search.py",
        str(photos),
        "a red bicycle",
        "--model",
        str(image_models["clip"]),
        "--uri",
        str(tmp_path / "p.db"),
        "--limit",
        "3",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Loading weights" not in done.stderr  # transformers' progress bar is silenced
    assert f"indexed: {len(good)} new, 0 already stored, 6 failed" in done.stdout
    assert done.stdout.count(". ") >= 3 and "1. " in done.stdout
    again = run_example(
        "photo_search.py",
        str(photos),
        "a brick wall",
        "--model",
        str(image_models["clip"]),
        "--uri",
        str(tmp_path / "p.db"),
        cwd=tmp_path,
    )
    assert f"indexed: 0 new, {len(good)} already stored" in again.stdout


def test_audio_similarity(media_models, tmp_path):
    from tests.media_files import tone, write_audio

    clips = tmp_path / "clips"
    clips.mkdir()
    for number, frequency in enumerate([220.0, 440.0, 880.0]):
        write_audio(clips / f"tone{number}.wav", tone(1.0, frequency=frequency), 16000)
    (clips / "broken.mp3").write_bytes(b"ID3" + bytes(100))
    done = run_example(
        "audio_similarity.py",
        str(clips),
        str(clips / "tone1.wav"),
        "--model",
        str(media_models["whisper"]),
        "--uri",
        str(tmp_path / "a.db"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Loading weights" not in done.stderr
    assert "indexed: 3 new, 0 already stored, 1 failed" in done.stdout
    assert f"1. 1.000  {clips / 'tone1.wav'}" in done.stdout  # a clip is most similar to itself


def test_video_collection(image_models, media_models, tmp_path):
    from tests.media_files import write_video

    videos = tmp_path / "videos"
    videos.mkdir()
    for number in range(3):
        write_video(videos / f"clip{number}.mp4", 10 + 10 * number)
    (videos / "broken.mkv").write_bytes(b"not a video")
    words = run_example(
        "video_collection.py",
        str(videos),
        "a red bicycle",
        "--model",
        str(image_models["clip"]),
        "--uri",
        str(tmp_path / "v.db"),
        "--limit",
        "2",
        cwd=tmp_path,
    )
    assert words.returncode == 0, words.stderr[-2000:]
    assert "indexed: 3 new, 0 already stored, 1 failed" in words.stdout and "2. " in words.stdout
    like = run_example(
        "video_collection.py",
        str(videos),
        "--like",
        str(videos / "clip2.mp4"),
        "--model",
        str(media_models["perceiver"]),
        "--uri",
        str(tmp_path / "p.db"),
        cwd=tmp_path,
    )
    assert like.returncode == 0, like.stderr[-2000:]
    assert "Loading weights" not in words.stderr + like.stderr
    assert f"1. 1.000  {videos / 'clip2.mp4'}" in like.stdout


@pytest.mark.parametrize("name", ["photo_search.py", "audio_similarity.py", "video_collection.py"])
def test_missing_model_is_one_line_and_exit_2(name, tmp_path):
    missing = tmp_path / "no-such-model"
    done = run_example(
        name,
        str(tmp_path),
        "a red bicycle",
        "--model",
        str(missing),
        "--uri",
        str(tmp_path / "x.db"),
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith(f"{name}: error: model '{missing}'"), lines[0]
    assert "Traceback" not in done.stderr and "Loading weights" not in done.stderr
    assert done.stdout == ""
