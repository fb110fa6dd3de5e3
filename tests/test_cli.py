"""The `multiembed` command: every input kind, output format and exit code."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import multiembed
from multiembed.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def model(tiny_models) -> str:
    return str(tiny_models["mean"])


def run(*argv: str) -> int:
    return main([str(arg) for arg in argv])


def test_encode_text_file_to_parquet(model, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("a red bicycle\n\nthe quick brown fox\n", encoding="utf-8")
    out = tmp_path / "out.parquet"
    assert run("encode", "--modality", "text", source, "-o", out, "--model", model) == 0
    table = pq.read_table(out)
    assert table.column("source").to_pylist() == [f"{source}:1", f"{source}:3"]
    assert set(table.column("modality").to_pylist()) == {"text"}
    assert set(table.column("model").to_pylist()) == {model}
    expected = multiembed.load("text", model, device="cpu").encode_documents(
        ["a red bicycle", "the quick brown fox"]
    )
    np.testing.assert_allclose(np.array(table.column("vector").to_pylist()), np.stack(expected), atol=1e-6)
    assert "embedded 2 of 2 items, 0 failed" in capsys.readouterr().err


def test_folder_with_bad_files_exits_1_and_writes_the_good_ones(model, tmp_path, capsys):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a red bicycle")
    (folder / "sub" / "b.md").write_text("# milvus\nvector database")
    (folder / "empty.txt").write_text("")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "ignored.csv").write_text("not a text file")
    out = tmp_path / "out.jsonl"
    assert run("encode", "-m", "text", folder, "-o", out, "--model", model, "-q") == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["source"] for row in rows] == [str(folder / "a.txt"), str(folder / "sub" / "b.md")]
    err = capsys.readouterr().err
    assert f"failed: {folder / 'empty.txt'}: empty text" in err
    assert f"failed: {folder / 'latin1.txt'}: not valid UTF-8 text" in err
    assert "embedded 2 of 4 items, 2 failed" in err


def test_stdin_lines_and_format_flag(model, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"dog\nbrick wall\n")))
    out = tmp_path / "vectors.bin"
    assert run("encode", "-m", "text", "-", "-o", out, "--format", "npy", "--model", model) == 0
    expected = multiembed.load("text", model, device="cpu").encode_documents(["dog", "brick wall"])
    np.testing.assert_allclose(np.load(out), np.stack(expected), atol=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["encode", "-m", "pictures", "{src}"], "unknown modality 'pictures'"),
        (["encode", "-m", "text", "{tmp}/missing.txt"], "no such file or directory: {tmp}/missing.txt"),
        (
            ["encode", "-m", "text", "{src}", "--model", "{tmp}/nope"],
            "model '{tmp}/nope' for modality 'text': no such file or directory",
        ),
        (
            ["encode", "-m", "text", "{src}", "--model", "mpnet"],
            "model 'sentence-transformers/all-mpnet-base-v2' is not available: it is not installed or cached",
        ),
        (["encode", "-m", "text", "{src}", "-o", "{tmp}/out.csv"], "tell the output format from 'out.csv'"),
        (["encode", "-m", "text", "{tmp}/empty_dir"], "nothing to embed in {tmp}/empty_dir (looked for"),
        (["encode", "-m", "text", "{src}", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["encode", "-m", "text", "-", "-"], "stdin (-) can be given only once"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(argv, message, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    (tmp_path / "src.txt").write_text("dog\n")
    (tmp_path / "empty_dir").mkdir()
    filled = [arg.format(src=tmp_path / "src.txt", tmp=tmp_path) for arg in argv]
    monkeypatch.chdir(tmp_path)
    assert run(*filled) == 2
    err = capsys.readouterr().err.strip().splitlines()
    message = message.format(tmp=tmp_path)
    assert len(err) == 1 and err[0].startswith("multiembed: error:") and message in err[0]
    assert not (tmp_path / "embeddings.parquet").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_gpu_exits_2(model, tmp_path, capsys):
    (tmp_path / "src.txt").write_text("dog\n")
    assert (
        run(
            "encode",
            "-m",
            "text",
            tmp_path / "src.txt",
            "--model",
            model,
            "--device",
            "cuda",
            "-o",
            tmp_path / "o.parquet",
        )
        == 2
    )
    assert "CUDA is not available" in capsys.readouterr().err


def test_modalities_lists_models_dims_and_default(capsys):
    assert run("modalities") == 0
    out = capsys.readouterr().out
    assert "text:" in out
    assert "sentence-transformers/all-MiniLM-L6-v2" in out and "384-d  (default)" in out
    assert "BAAI/bge-base-en-v1.5" in out
    assert "tei:default" in out and "0-d" not in out  # a dimension set by a file or server: any-d
    ends: dict[str, set[int]] = {}  # where each model's "-d" ends, per modality: one column
    for line in out.splitlines():
        if not line.startswith(" "):
            modality = line.split(":")[0]
        elif line.removesuffix("  (default)").endswith("-d"):
            ends.setdefault(modality, set()).add(len(line.removesuffix("  (default)")))
    assert ends and all(len(column) == 1 for column in ends.values()), ends


@pytest.mark.parametrize("argv", [["--help"], ["encode", "--help"], ["modalities", "--help"]])
def test_help_is_useful(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(*argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: multiembed" in out
    if argv[0] == "encode":
        assert "--modality" in out and "--format" in out and "stdin" in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert run() == 2
    assert "encode" in capsys.readouterr().out


def _cli(*args: str, stdin: bytes | None = None, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "multiembed", *args],
        input=stdin,
        cwd=cwd,
        capture_output=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_installed_command_quick_start(tmp_path):
    """The README's quick start: the packaged MiniLM on the shipped sample, default output name."""
    done = _cli("encode", "--modality", "text", str(ROOT / "examples" / "sample_texts.txt"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    table = pq.read_table(tmp_path / "embeddings.parquet")
    assert table.num_rows == 8 and len(table.column("vector")[0]) == 384
    assert set(table.column("model").to_pylist()) == {"sentence-transformers/all-MiniLM-L6-v2"}
    assert b"embedded 8 of 8 items, 0 failed" in done.stderr


@pytest.mark.slow
def test_subprocess_stdin_with_a_bad_line_exits_1(model, tmp_path):
    done = _cli(
        "encode",
        "-m",
        "text",
        "-",
        "--model",
        model,
        "-o",
        "out.jsonl",
        stdin=b"dog\n\xc3\x28\nbrick wall\n",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    assert b"failed: stdin:2: not valid UTF-8 text" in done.stderr


@pytest.mark.slow
def test_readme_quick_start_index_and_search(tmp_path):
    """The README's main job: index the sample into Milvus Lite, then search it."""
    sample = str(ROOT / "examples" / "sample_texts.txt")
    done = _cli("index", sample, "--modality", "text", "--collection", "quickstart", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"added 8, skipped 0 already stored, 0 failed" in done.stderr
    assert (tmp_path / "multiembed.db").exists()
    found = _cli("search", "who started research on AI?", "--collection", "quickstart", cwd=tmp_path)
    assert found.returncode == 0
    header, first = found.stdout.decode().splitlines()[:2]
    assert header.split() == ["#", "cosine", "source"]
    top = first.split()
    assert top[0] == "1" and top[2].endswith("sample_texts.txt:2")  # the Turing sentence
    assert "Alan Turing" in first  # text collections show the sentence found
