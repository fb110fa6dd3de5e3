"""`multiembed index / search / collections` against real Milvus Lite, including a killed run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from multiembed.cli import main
from multiembed.milvus import MilvusStore


@pytest.fixture
def model(tiny_models) -> str:
    return str(tiny_models["mean"])


def write_docs(folder, texts):
    folder.mkdir(parents=True, exist_ok=True)
    for number, text in enumerate(texts):
        (folder / f"{number:05d}.txt").write_text(text)


def test_index_search_collections(model, tmp_path, capsys):
    docs = tmp_path / "docs"
    write_docs(docs, ["a red bicycle", "a brick wall", "the lazy dog"])
    (docs / "empty.txt").write_text("")
    uri = str(tmp_path / "m.db")
    code = main(["index", str(docs), "-m", "text", "--model", model, "--uri", uri, "-q"])
    assert code == 1  # the empty file failed; the others are stored
    err = capsys.readouterr().err
    assert f"failed: {docs / 'empty.txt'}: empty text" in err
    assert "added 3, skipped 0 already stored, 1 failed" in err and "collection 'text' (3 rows)" in err

    (docs / "empty.txt").unlink()
    write_docs(tmp_path / "more", ["milvus vector database"])
    assert main(["index", str(docs), str(tmp_path / "more"), "-c", "text", "--uri", uri, "-q"]) == 0
    assert "added 1, skipped 3 already stored, 0 failed" in capsys.readouterr().err

    assert main(["search", "a red bicycle", "-c", "text", "--uri", uri, "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split() == ["#", "cosine", "source"]
    assert lines[1].split()[0] == "1" and lines[1].split()[2].endswith("00000.txt")
    assert lines[1].endswith("a red bicycle")  # the text found, after its source
    assert float(lines[1].split()[1]) == pytest.approx(1.0, abs=1e-4)

    assert main(["search", "--file", str(docs / "00001.txt"), "-c", "text", "--uri", uri, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["rank"] == 1 and hits[0]["source"].endswith("00001.txt") and len(hits) == 4

    assert main(["collections", "--uri", uri]) == 0
    out = capsys.readouterr().out
    assert out.split()[:3] == ["text", "4", "rows"] and model in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "x", "-c", "missing"], "no collection 'missing' in "),
        (["search", "-c", "text"], "give a query text or --file"),
        (["index", "{docs}"], "give --modality"),
        (["index", "{docs}", "-m", "text", "--index-type", "DISKANN"], "never builds it"),
        (["index", "{docs}", "-m", "image", "-c", "text"], "holds 'text' vectors, not 'image'"),
    ],
)
def test_index_and_search_usage_errors(model, tmp_path, capsys, argv, message):
    docs = tmp_path / "docs"
    write_docs(docs, ["a red bicycle"])
    uri = str(tmp_path / "m.db")
    assert main(["index", str(docs), "-m", "text", "--model", model, "--uri", uri, "-q"]) == 0
    capsys.readouterr()
    assert main([arg.format(docs=docs) for arg in argv] + ["--uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def _index_command(model, docs, uri):
    return [sys.executable, "-m", "multiembed", "index", str(docs), "-m", "text", "--model", model,
            "--uri", uri, "-c", "docs", "--batch-size", "1", "-v", "-q"]  # fmt: skip


def _index_until_stored(model, docs, uri: str) -> subprocess.Popen[str]:
    """An ``index`` run in a subprocess, returned once it has stored its first rows (or after 240 s)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(_index_command(model, docs, uri), stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    deadline = time.monotonic() + 240
    for line in process.stderr:
        if line.startswith("stored") or time.monotonic() > deadline:
            break
    return process


@pytest.mark.slow
def test_killed_index_run_resumes_with_every_file_exactly_once(model, tmp_path):
    texts = [f"document number {n} about {'dogs' if n % 2 else 'bicycles'} and {n * 7}" for n in range(3000)]
    docs = tmp_path / "docs"
    write_docs(docs, texts)
    uri = str(tmp_path / "kill.db")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = _index_until_stored(model, docs, uri)
    process.send_signal(signal.SIGKILL)  # kill hard
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    with MilvusStore(uri, "docs") as store:
        interrupted = store.count()
    assert 0 < interrupted < len(texts), "the kill must land mid-run"

    done = subprocess.run(
        _index_command(model, docs, uri), capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with MilvusStore(uri, "docs") as store:
        assert store.count() == len(texts)
        expected = {hashlib.sha256(text.encode()).hexdigest() for text in texts}
        stored = store.client.query("docs", filter="", output_fields=["id"], limit=16384)
        assert {row["id"] for row in stored} == expected and len(stored) == len(texts)
    assert f"skipped {interrupted} already stored" in done.stderr


@pytest.mark.slow
def test_ctrl_c_keeps_what_was_stored_and_says_how_to_go_on(model, tmp_path):
    texts = [f"note {n} on {'cats' if n % 2 else 'trains'}" for n in range(3000)]
    docs = tmp_path / "docs"
    write_docs(docs, texts)
    uri = str(tmp_path / "interrupted.db")
    process = _index_until_stored(model, docs, uri)
    process.send_signal(signal.SIGINT)
    assert process.stderr is not None
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130, rest[-2000:]
    assert "multiembed: interrupted; what was stored stays" in rest
    assert "run the same command again to go on" in rest
    with MilvusStore(uri, "docs") as store:
        assert 0 < store.count() < len(texts)
