"""Resumable sharded encode: `multiembed encode ... --shard-size N -o DIR`.

Model work is counted through a real encoder: the text encoder, subclassed to count the items it
preprocesses for the model, registered as a modality of its own (its identity is the text
encoder's, so it resumes runs the plain text modality started).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from multiembed.cli import main
from multiembed.registry import get, register
from multiembed.shards import JOURNAL, MANIFEST, encode_shards, read_shards


class CountingText(get("text").encoder_class):
    """The text encoder, counting the items it hands to its model."""

    items: ClassVar[int] = 0

    def preprocess(self, raws: list[str], role: Any) -> Any:
        CountingText.items += len(raws)
        return super().preprocess(raws, role)


register(dataclasses.replace(get("text"), name="counting-text", encoder_class=CountingText))


def model_items(argv: list[str]) -> tuple[int, int]:
    """Run the command in this process; its exit code and how many items reached the model."""
    before = CountingText.items
    code = main(argv)
    return code, CountingText.items - before


def shard_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("part-*"))


def sources(folder: Path) -> list[str]:
    """Every row's source across the shards, in shard order."""
    return [
        source
        for name in shard_files(folder)
        for source in pq.read_table(folder / name)["source"].to_pylist()
    ]


@pytest.fixture
def lines(tmp_path) -> Path:
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"document number {number} about dogs\n" for number in range(25)))
    return path


@pytest.fixture
def encode(tiny_models, tmp_path):
    def argv(inputs: Path, *extra: str, folder: Path | None = None) -> list[str]:
        out = folder or tmp_path / "shards"
        return ["encode", str(inputs), "-m", "counting-text", "--model", str(tiny_models["mean"]), "-q",
                "--shard-size", "10", "-o", str(out), *extra]  # fmt: skip

    return argv


def test_shards_are_named_by_input_range_and_a_rerun_does_no_model_work(
    encode, lines, tmp_path, tiny_models, capsys
):
    folder = tmp_path / "shards"
    assert model_items(encode(lines)) == (0, 25)
    assert shard_files(folder) == [
        "part-000000-000009.parquet",
        "part-000010-000019.parquet",
        "part-000020-000024.parquet",
    ]
    assert (
        "embedded 25 of 25 items, 0 failed, in 3 shards (3 written, 0 already done)"
        in capsys.readouterr().err
    )
    assert sources(folder) == [f"{lines}:{number}" for number in range(1, 26)]

    assert model_items(encode(lines)) == (0, 0)  # every shard finished: nothing is embedded again
    assert "in 3 shards (0 written, 3 already done)" in capsys.readouterr().err
    (folder / "part-000010-000019.parquet").unlink()
    assert model_items(encode(lines)) == (0, 10)  # only the missing shard

    whole = tmp_path / "whole.parquet"  # the same vectors as one unsharded run
    assert (
        main(["encode", str(lines), "-m", "text", "--model", str(tiny_models["mean"]), "-o", str(whole)]) == 0
    )
    tables = [pq.read_table(folder / name) for name in shard_files(folder)]
    sharded, single = pa.concat_tables(tables), pq.read_table(whole)
    assert sharded["id"].to_pylist() == single["id"].to_pylist()
    np.testing.assert_array_equal(
        np.array(sharded["vector"].to_pylist()), np.array(single["vector"].to_pylist())
    )
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["shard_size"] == 10 and manifest["config"]["modality"] == "text"
    assert read_shards(folder)["part-000020-000024.parquet"]["rows"] == 5


def test_what_a_kill_leaves_behind_is_redone_or_removed(encode, lines, tmp_path):
    folder = tmp_path / "shards"
    main(encode(lines))
    journal = (folder / JOURNAL).read_text().splitlines()
    first = next(line for line in journal if "part-000000-000009" in line)
    others = [line for line in journal if line != first]
    # killed while recording the first shard (renamed into place): its line is cut short
    (folder / JOURNAL).write_text("".join(line + "\n" for line in others) + first[: len(first) // 2])
    leftovers = [  # killed while writing a shard, the manifest, or the journal's final rewrite
        folder / ".part-000010-000019.parquet.0123456789ab.tmp",
        folder / f".{MANIFEST}.0123456789ab.tmp",
        folder / f".{JOURNAL}.0123456789ab.tmp",
    ]
    for leftover in leftovers:
        leftover.write_bytes(b"half a file")
    assert model_items(encode(lines)) == (0, 10)
    assert not [leftover for leftover in leftovers if leftover.exists()] and len(shard_files(folder)) == 3
    assert sorted(sources(folder)) == sorted(f"{lines}:{number}" for number in range(1, 26))


def test_inputs_that_grew_replace_the_short_last_shard(encode, lines, tmp_path):
    folder = tmp_path / "shards"
    main(encode(lines))
    with lines.open("a") as stream:
        stream.write("".join(f"one more document {number}\n" for number in range(7)))
    assert model_items(encode(lines)) == (0, 12)  # the old last shard (5) again, and the new items
    assert shard_files(folder)[2:] == ["part-000020-000029.parquet", "part-000030-000031.parquet"]
    assert sources(folder) == [f"{lines}:{number}" for number in range(1, 33)]
    assert set(read_shards(folder)) == set(shard_files(folder))


def test_failures_are_kept_in_the_manifest_and_reported_by_every_run(encode, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    for number in range(12):
        (docs / f"{number:02d}.txt").write_text("" if number == 4 else f"text number {number}")
    assert model_items(encode(docs)) == (1, 11)
    assert f"failed: {docs / '04.txt'}: empty text" in capsys.readouterr().err
    assert model_items(encode(docs)) == (1, 0)
    err = capsys.readouterr().err
    assert f"failed: {docs / '04.txt'}: empty text" in err and "embedded 11 of 12 items, 1 failed" in err


def test_other_formats_are_sharded_too(tiny_models, lines, tmp_path):
    import multiembed

    encoder = multiembed.load("text", str(tiny_models["mean"]), device="cpu")
    report = encode_shards(
        encoder, lines.read_text().splitlines(), tmp_path / "npy", 10, fmt="npy", progress=False
    )
    assert report.written == ["part-000000-000009.npy", "part-000010-000019.npy", "part-000020-000024.npy"]
    matrix = np.concatenate([np.load(tmp_path / "npy" / name) for name in report.written])
    np.testing.assert_allclose(matrix, encoder.encode(lines.read_text().splitlines()).vectors, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--shard-size", "0"], "--shard-size must be >= 1"),
        (["-o", "{tmp}/out.parquet"], "-o names a folder for the shards"),
        (["-o", "{tmp}/other"], "holds files other than shards (notes.txt)"),
        (["--shard-size", "7"], "was written with shard_size 10, not 7"),
        (["--model", "{other}"], "pooling: shards has 'mean', encoder has 'max'"),
    ],
)
def test_a_folder_resumes_only_the_same_run(encode, lines, tmp_path, tiny_models, capsys, change, message):
    main(encode(lines))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    change = [arg.format(tmp=tmp_path, other=tiny_models["max-dense"]) for arg in change]
    capsys.readouterr()
    assert main(encode(lines) + change) == 2  # the later option wins
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.slow
def test_a_killed_run_resumes_with_every_item_exactly_once(tiny_models, tmp_path):
    count, size = 600, 40
    (tmp_path / "lines.txt").write_text("".join(f"document {number} about dogs\n" for number in range(count)))
    folder = tmp_path / "shards"
    argv = ["encode", str(tmp_path / "lines.txt"), "--model", str(tiny_models["mean"]), "-q",
            "--shard-size", str(size), "-o", str(folder)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    slowly = ["-m", "text", "--batch-size", "2"]  # many small batches: the kill lands mid-run
    process = subprocess.Popen([sys.executable, "-m", "multiembed", *argv, *slowly], env=env)
    deadline = time.monotonic() + 240
    while not shard_files(folder) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    delay = random.uniform(0, 0.2)  # somewhere in the run: writing a shard, renaming, recording
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    finished = shard_files(folder)
    assert 0 < len(finished) < count // size, f"the kill must land mid-run (it came {delay:.2f}s in)"
    kept = set(read_shards(folder)) & set(finished)  # none if killed before the first record

    code, embedded = model_items([*argv, "-m", "counting-text"])  # resumed, with the same identity
    assert code == 0
    assert embedded == count - size * len(kept), f"shards recorded before the kill ({delay:.2f}s) are kept"
    expected = [f"{tmp_path / 'lines.txt'}:{number}" for number in range(1, count + 1)]
    assert sources(folder) == expected  # every item once, in order
    shards = read_shards(folder)
    assert set(shards) == set(shard_files(folder)) and len(shards) == count // size
    assert not [path for path in folder.iterdir() if path.name.endswith(".tmp")]
