"""Hostile inputs, as an attacker would send them: FIFOs, links to /dev/zero, oversize files, a 50 MB
line, UTF-16 files, damaged and malicious weights. Every run finishes, every good item is kept,
every bad one is reported with its reason, and memory stays bounded (measured in a subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import multiembed
from multiembed.sources import read_lines
from tests.image_files import photo
from tests.media_files import write_video

ROOT = Path(__file__).resolve().parent.parent
#: what an exploit in a hostile file would create; per run, so a leftover from elsewhere cannot fail it
MARKER = Path(tempfile.gettempdir()) / f"multiembed-pwned-{os.getpid()}"


def cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "multiembed", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def hostile_files(folder: Path, suffix: str) -> dict[str, str]:
    """A FIFO, a link to /dev/zero and a link to a FIFO, all named like good files; name -> reason."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / f"fifo{suffix}")
    (folder / f"zero{suffix}").symlink_to("/dev/zero")
    os.mkfifo(folder / "real-fifo")
    (folder / f"to-fifo{suffix}").symlink_to(folder / "real-fifo")
    return {
        f"fifo{suffix}": "not a regular file (a FIFO)",
        f"zero{suffix}": "not a regular file (a character device)",
        f"to-fifo{suffix}": "not a regular file (a FIFO)",
    }


def reasons(result: multiembed.Embeddings) -> dict[str, str]:
    return {Path(error.source).name: error.reason for error in result.errors}


def test_text_folders_with_fifos_and_dev_zero_links_finish(tiny_models, tmp_path):
    bad = hostile_files(tmp_path, ".txt")
    (tmp_path / "good.txt").write_text("a red bicycle")
    (tmp_path / "big.txt").write_text("word " * 1000)
    from multiembed.sources import expand

    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu", max_bytes=1000)
    result = encoder.encode(list(expand("text", str(tmp_path))))
    assert [Path(source).name for source in result.sources] == ["good.txt"]
    assert reasons(result) == {
        **bad,
        "big.txt": "file too large: 5,000 bytes, over the limit of 1,000 (max_bytes=)",
    }


def test_image_and_video_folders_with_fifos_and_dev_zero_links_finish(image_models, tmp_path):
    images = tmp_path / "images"
    bad_images = hostile_files(images, ".jpg")
    photo(1).save(images / "good.jpg")
    encoder = multiembed.load("image", str(image_models["hf"]), device="cpu", workers=0)
    result = encoder.encode(sorted(images.glob("*.jpg")))
    assert [Path(source).name for source in result.sources] == ["good.jpg"]
    assert reasons(result) == bad_images
    tiny = multiembed.load("image", str(image_models["hf"]), device="cpu", workers=0, max_bytes=100)
    assert reasons(tiny.encode([images / "good.jpg"]))["good.jpg"].startswith("file too large")

    videos = tmp_path / "videos"
    bad_videos = hostile_files(videos, ".mp4")
    write_video(videos / "good.mp4", 6, audio=False)
    clips = multiembed.load("video", str(image_models["clip"]), device="cpu", workers=0, frames=2)
    result = clips.encode(sorted(videos.glob("*.mp4")))
    assert [Path(source).name for source in result.sources] == ["good.mp4"]
    assert reasons(result) == bad_videos


@pytest.mark.slow
def test_the_cli_finishes_on_a_hostile_folder(tiny_models, tmp_path):
    folder = tmp_path / "notes"
    bad = hostile_files(folder, ".txt")
    (folder / "good.txt").write_text("milvus")
    done = cli("encode", "-m", "text", str(folder), "--model", str(tiny_models["mean"]), "-o",
               str(tmp_path / "out.parquet"), "-q", timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr
    for name, reason in bad.items():
        assert f"failed: {folder / name}: {reason}" in done.stderr
    assert "embedded 1 of 4 items" in done.stderr


def test_a_fifo_or_device_named_on_the_command_line_is_refused(tiny_models, tmp_path):
    os.mkfifo(tmp_path / "f.txt")
    done = cli("encode", "-m", "text", str(tmp_path / "f.txt"), "--model", str(tiny_models["mean"]),
               "-o", str(tmp_path / "o.parquet"), timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"multiembed: error: {tmp_path / 'f.txt'}: not a regular file or folder"


def test_utf16_and_utf8_bom_line_files_are_decoded_not_split_into_mojibake(tmp_path):
    lines = ["héllo wörld", "second line", "三 third"]
    for name, data in {
        "le.txt": "\n".join(lines).encode("utf-16"),  # with its BOM, little-endian here
        "be.txt": b"\xfe\xff" + "\r\n".join(lines).encode("utf-16-be"),
        "sig.txt": b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8"),
        "u32.txt": "\n".join(lines).encode("utf-32"),
    }.items():
        (tmp_path / name).write_bytes(data)
        with (tmp_path / name).open("rb") as stream:
            assert [item.value for item in read_lines(stream, name)] == lines, name


def test_files_of_lines_that_are_not_text_fail_as_items_and_the_run_goes_on(tiny_models, tmp_path, capsys):
    from multiembed.cli import main

    photo(1).save(tmp_path / "photo.png")  # given as text by mistake: one failure, not 40 "lines"
    (tmp_path / "broken16.txt").write_bytes("fine line\n".encode("utf-16") + b"\x00\xd8")  # cut off
    (tmp_path / "latin.txt").write_bytes("café\n".encode("latin-1"))
    (tmp_path / "plain.txt").write_text("GIF8 is how a GIF starts\nRIFF raf\n%PDF-1.4 explained\n")  # text
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")  # a PDF, as lines
    names = ("photo.png", "broken16.txt", "latin.txt", "plain.txt", "notes.pdf")
    files = [str(tmp_path / name) for name in names]
    out = tmp_path / "out.parquet"
    assert (
        main(["encode", "-m", "text", *files, "--model", str(tiny_models["mean"]), "-o", str(out), "-q"]) == 1
    )
    err = capsys.readouterr().err
    assert f"failed: {files[0]}: a PNG image, not a text file of lines" in err
    assert f"failed: {files[1]}:2: not valid UTF-16 text" in err and "at or after this line" in err
    assert f"failed: {files[4]}: a PDF document, not a text file of lines" in err
    assert f"failed: {files[2]}:1: not valid UTF-8 text (byte 3); convert it to UTF-8 first" in err
    assert "embedded 4 of 8 items, 4 failed" in err
    sources = pq.read_table(out).column("source").to_pylist()
    assert sources == [f"{files[1]}:1", *(f"{files[3]}:{line}" for line in (1, 2, 3))]


def test_a_file_name_that_is_not_utf8_is_recorded_escaped(tiny_models, tmp_path, capsys):
    """Milvus, Parquet and JSON hold UTF-8 only: the raw name used to fail the whole write."""
    from multiembed.cli import main
    from multiembed.milvus import MilvusStore

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / os.fsdecode(b"m\xffname.txt")).write_text("hello there")
    (folder / "ok.txt").write_text("general kenobi")
    escaped, model = str(folder / "m\\xffname.txt"), str(tiny_models["mean"])
    for out in ("o.jsonl", "o.parquet"):
        assert (
            main(["encode", "-m", "text", str(folder), "--model", model, "-o", str(tmp_path / out), "-q"])
            == 0
        )
    assert sorted(pq.read_table(tmp_path / "o.parquet").column("source").to_pylist()) == [
        escaped,
        str(folder / "ok.txt"),
    ]
    uri = str(tmp_path / "n.db")
    assert main(["index", str(folder), "-m", "text", "--model", model, "--uri", uri, "-c", "docs", "-q"]) == 0
    with MilvusStore(uri, "docs") as store:
        assert store.search("hello there", limit=1)[0].source == escaped
    capsys.readouterr()


def test_a_utf16_file_as_one_item_is_decoded(tiny_models, tmp_path):
    (tmp_path / "doc.txt").write_bytes("a red bicycle".encode("utf-16"))
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    from_file = encoder.encode([tmp_path / "doc.txt"])
    np.testing.assert_allclose(from_file.vectors, encoder.encode(["a red bicycle"]).vectors, atol=1e-6)


LONG_LINE_RUN = """
import resource, sys, numpy as np
import multiembed
encoder = multiembed.load("text", sys.argv[1], device="cpu")
line = ("the quick brown fox jumps over the lazy dog " * (50 * 1024 * 1024 // 44))
vector = encoder.encode_documents([line])[0]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print("PEAK_MB", peak, "NORM", float(np.linalg.norm(vector)))
"""


@pytest.mark.slow
def test_a_50_mb_line_is_cut_before_tokenizing_with_bounded_memory(minilm_dir, tmp_path):
    """Tokenizing 50 MB whole peaked at 7.9 GB; the cut keeps every token the model reads."""
    baseline = subprocess.run(
        [sys.executable, "-c", LONG_LINE_RUN.replace("* (50 * 1024 * 1024 // 44)", "* 10"), str(minilm_dir)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", LONG_LINE_RUN, str(minilm_dir)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    small = int(baseline.stdout.split()[1])
    peak = int(done.stdout.split()[1])
    assert peak < small + 400, f"peak {peak} MB vs {small} MB for a short line"  # the line itself is 50 MB
    assert abs(float(done.stdout.split()[3]) - 1.0) < 1e-5


def test_long_texts_keep_parity_with_sentence_transformers(minilm_dir):
    from sentence_transformers import SentenceTransformer

    words = "émigrés read naïve poems about the 1956 founding of AI; the fox jumps. " * 400
    texts = [
        words,
        "x" * 9000 + " tail",
        "y" * 5000 + " " + words,
        "short",
        "word " * 10 + "a" * 200_000 + " more words" * 500,  # a giant word across the bound
        "x" * 90 + "\x1c" + "y" * 5000 + " z" * 3000,  # a separator BERT's normalizer deletes
    ]
    encoder = multiembed.load("text", str(minilm_dir), device="cpu")
    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.abs(np.stack(encoder.encode_documents(texts)) - reference).max() <= 1e-5


# ---- damaged and malicious weights -----------------------------------------------------------------
class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


@pytest.fixture
def damaged_text_models(tiny_models, tmp_path) -> dict[str, Path]:
    """Copies of a tiny sentence-transformers model with its weights file damaged in each way."""
    models = {}
    for name in ("garbage", "truncated", "pickle"):
        folder = Path(shutil.copytree(tiny_models["mean"], tmp_path / name))
        weights = next(folder.rglob("model.safetensors"))
        if name == "garbage":
            weights.write_bytes(b"\x00garbage" * 1000)
        elif name == "truncated":
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        else:
            weights.unlink()
            torch.save({"embeddings.word_embeddings.weight": Exploit()}, weights.parent / "pytorch_model.bin")
        models[name] = folder
    return models


@pytest.mark.parametrize(
    ("case", "file", "reason"),
    [
        ("garbage", "model.safetensors", "damaged or truncated safetensors file"),
        ("truncated", "model.safetensors", "damaged or truncated safetensors file"),
        ("pickle", "pytorch_model.bin", "refused: it is a pickle that would run code"),
    ],
)
def test_damaged_weights_are_a_model_error_naming_the_file(damaged_text_models, case, file, reason):
    folder = damaged_text_models[case]
    with pytest.raises(multiembed.ModelNotFoundError) as caught:
        multiembed.load("text", str(folder), device="cpu")
    assert str(caught.value).startswith(f"{folder}") and f"{file}: {reason}" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not MARKER.exists()


@pytest.mark.slow
def test_the_cli_reports_malicious_weights_in_one_line_with_exit_2(damaged_text_models, tmp_path):
    folder = damaged_text_models["pickle"]
    (tmp_path / "in.txt").write_text("hello\n")
    done = cli("encode", "-m", "text", str(tmp_path / "in.txt"), "--model", str(folder), "-o",
               str(tmp_path / "o.parquet"), timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"multiembed: error: {folder}/pytorch_model.bin: refused: it is a pickle that would run code "
        "or build objects (only weights are loaded)"
    )
    assert not (tmp_path / "o.parquet").exists() and not MARKER.exists()


def test_a_pickled_resnet_state_dict_is_refused(tmp_path):
    evil = tmp_path / "resnet50.pth"
    torch.save({"conv1.weight": Exploit()}, evil)
    with pytest.raises(multiembed.ModelNotFoundError, match=r"resnet50\.pth: refused: it is a pickle"):
        multiembed.load("image", str(evil), device="cpu")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(
        multiembed.ModelNotFoundError, match=r"cut\.safetensors: damaged or truncated safetensors"
    ):
        multiembed.load("image", str(truncated), device="cpu")
    assert not MARKER.exists()


def test_a_video_cut_short_is_an_error_not_repeated_frames(tmp_path):
    from multiembed.video import read_video

    whole = write_video(tmp_path / "whole.webm", 48, audio=False, pattern=True)
    data = whole.read_bytes()
    (tmp_path / "half.webm").write_bytes(data[: len(data) // 2])
    assert len(read_video(whole, 8)[0]) == 8
    with pytest.raises(multiembed.InputError, match=r"truncated video: frames stop at \d+\.\ds of the 6\.0s"):
        read_video(tmp_path / "half.webm", 8)


def test_an_overlong_line_is_reported_without_being_held(monkeypatch, tiny_models):
    import io

    import multiembed.sources as sources

    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1000)
    data = b"short one\n" + b"x" * 5000 + b"\nlast line\nno newline at the end " + b"y" * 3000
    items = list(read_lines(io.BytesIO(data), "big.txt"))
    assert [item.source for item in items] == ["big.txt:1", "big.txt:2", "big.txt:3", "big.txt:4"]
    assert items[2].value == "last line" and items[1].value == sources.LineTooLong(5001)
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    result = encoder.encode(items)
    assert {error.source: error.reason.split(" (")[0] for error in result.errors} == {
        "big.txt:2": "line too long: 5,001 bytes",
        "big.txt:4": "line too long: 3,022 bytes",
    }
    assert result.sources == ["big.txt:1", "big.txt:3"]


def test_text_with_nul_characters_is_refused(tiny_models):
    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    result = encoder.encode(["h\x00e\x00l\x00l\x00o\x00"])
    assert result.errors[0].reason == "text contains NUL characters (UTF-16 without a byte-order mark?)"


def test_only_the_listed_image_formats_are_decoded():
    """A file named .jpg that is really EPS (or any other PIL plugin's format) never reaches its decoder."""
    import io as _io

    from PIL import Image

    from multiembed.images import load_image

    buffer = _io.BytesIO()
    Image.new("RGB", (20, 20)).save(buffer, "PPM")
    with pytest.raises(multiembed.InputError, match="not an image, or an unsupported image format"):
        load_image(buffer.getvalue())
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(multiembed.InputError, match="not an image, or an unsupported image format"):
        load_image(eps)
