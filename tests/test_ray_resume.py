"""Kill-and-resume on Ray: ``multiembed index --engine ray`` SIGKILLed with everything it started (the
command and its local Ray cluster, one process group), then run again, ends with every item stored
exactly once, with the vectors an in-process run gives, and the re-run embeds only what is missing.

The killed run is a real command in a session of its own, so the kill reaches every Ray process it
started, and the test checks that none outlives it. The re-run is the same command (``main``) on a
Ray cluster started here, whose workers count the items their model embeds: Ray's
``worker_process_setup_hook`` sets ``Encoder.batch_observer`` in each of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import multiembed
from multiembed.cli import main
from multiembed.milvus import MilvusStore

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'multiembed[ray]'")

from multiembed.ray.local import init_local  # noqa: E402
from tests.test_ray import LOCAL_CLUSTER  # noqa: E402

#: the file (named in this environment variable) where the counting workers note each model batch
COUNT_FILE = "MULTIEMBED_TEST_MODEL_ITEMS"
#: enough for the sink to write in several requests (2,048 rows each) and tasks (4,096 rows each)
ITEMS = 6000
REPOSITORY = Path(__file__).resolve().parents[1]


def count_model_items() -> None:
    """In each Ray worker: append the size of every model batch to ``$COUNT_FILE``, a line each."""
    from multiembed.encoder import Encoder

    path = os.environ[COUNT_FILE]

    def observe(batch: dict[str, Any]) -> None:
        with open(path, "a") as stream:  # a short append: whole lines, whichever actor writes
            stream.write(f"{len(batch['input_ids'])}\n")

    Encoder.batch_observer = staticmethod(observe)


class CountingCluster:
    """A local Ray cluster for the re-runs, started on first use, whose workers count model items."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "model-items.txt"
        self.started = False

    def start(self) -> None:
        if self.started:
            return
        # The workers import this module for the hook, before Ray puts the driver's folder on their path.
        path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
        env = {COUNT_FILE: str(self.file), "PYTHONPATH": path}
        init_local(
            **LOCAL_CLUSTER, runtime_env={"worker_process_setup_hook": count_model_items, "env_vars": env}
        )
        self.started = True
        # A worker whose hook fails is started again and again, and a job waits for it forever.
        assert ray.get(ray.remote(lambda: os.environ[COUNT_FILE]).remote(), timeout=120) == str(self.file)

    def items(self) -> int:
        """Items the workers embedded since the last call."""
        if not self.file.exists():
            return 0
        lines = self.file.read_text().split()
        self.file.unlink()
        return sum(int(line) for line in lines)


@pytest.fixture(scope="module")
def counting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CountingCluster]:
    cluster = CountingCluster(tmp_path_factory.mktemp("counting"))
    yield cluster
    if cluster.started:
        ray.shutdown()


def session_processes(session: int) -> list[int]:
    """The live processes of a session, from Linux's ``/proc``: what a killed run left running."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        state, _, _, sid = stat[stat.rindex(")") + 2 :].split()[:4]  # after "pid (comm) "
        if state != "Z" and int(sid) == session:
            found.append(int(entry.name))
    return found


class Run:
    """``multiembed ...`` in a session (and process group) of its own: the command and its Ray cluster."""

    def __init__(self, argv: list[str], log: Path) -> None:
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # its own cluster
        self.log = log
        with log.open("wb") as stream:  # a file, not a pipe nobody reads: the run never blocks on it
            self.process = subprocess.Popen(
                [sys.executable, "-m", "multiembed", *argv],
                stdout=stream,
                stderr=subprocess.STDOUT,
                env={**env, "HF_HUB_OFFLINE": "1"},
                start_new_session=True,
            )

    def kill_when(self, condition: Callable[[], bool], seconds: float = 240) -> list[int]:
        """SIGKILL the process group once ``condition`` holds; returns what of the session still
        runs 30 s on (Ray's processes die with their group, or when the process that started them does)."""
        give_up = time.monotonic() + seconds

        def waiting() -> bool:
            return self.process.poll() is None and time.monotonic() < give_up

        while not (reached := bool(condition())) and waiting():
            time.sleep(0.05)
        assert self.process.poll() is None, "it ended before the kill:\n" + self.log.read_text()[-3000:]
        assert reached, f"no kill point in {seconds:.0f} s:\n" + self.log.read_text()[-3000:]
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        deadline = time.monotonic() + 30
        while (left := session_processes(self.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def clean_up(self) -> None:
        """Kill whatever of this run still runs, one pid at a time (this run's session only)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=60)
        for pid in session_processes(self.process.pid):
            with contextlib.suppress(ProcessLookupError):  # gone since it was listed
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.clean_up()


def rows_on_disk(db: Path) -> bool:
    """Whether Milvus Lite wrote rows into ``db`` (its write-ahead log, or a flushed segment), read off
    the files: the database can be open in one process at a time, the run's writer."""
    return any(path.stat().st_size for path in db.rglob("wal_data_*.arrow")) or any(db.rglob("*.parquet"))


def stored_rows(uri: str) -> tuple[int, dict[str, list[float]]]:
    """The collection's row count and its vectors by id."""
    with MilvusStore(uri, "docs") as store:
        rows = store.client.query("docs", filter="", output_fields=["id", "vector"], limit=16384)
        return store.count(), {row["id"]: row["vector"] for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("kill_point", ["as its Ray cluster starts", "once rows are written"])
def test_a_killed_ray_index_resumes_with_every_item_once_and_embeds_only_what_is_missing(
    kill_point: str,
    tiny_models: dict[str, Path],
    tmp_path: Path,
    runs: list[Run],
    counting: CountingCluster,
    capsys: pytest.CaptureFixture[str],
) -> None:
    texts = [f"document {number} about {('dogs', 'bicycles', 'rain')[number % 3]}" for number in range(ITEMS)]
    lines, db, model = tmp_path / "lines.txt", tmp_path / "kill.db", str(tiny_models["mean"])
    lines.write_text("".join(text + "\n" for text in texts))
    argv = ["index", str(lines), "-m", "text", "--model", model, "--uri", str(db), "-c", "docs",
            "--engine", "ray", "--device", "cpu", "-q"]  # fmt: skip

    runs.append(run := Run(argv, tmp_path / "killed.log"))
    if kill_point == "once rows are written":
        left = run.kill_when(lambda: rows_on_disk(db))
    else:  # the collection is made before Ray starts: it holds nothing yet
        left = run.kill_when(lambda: len(session_processes(run.process.pid)) > 1)
    assert left == [], "processes of the killed run outlived it"
    interrupted = stored_rows(str(db))[0]
    if kill_point == "once rows are written":
        assert 0 < interrupted < len(texts), "the kill must land mid-run"
    else:
        assert interrupted == 0

    counting.start()
    counting.items()
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"added {len(texts) - interrupted}, skipped {interrupted} already stored, 0 failed" in err, err
    embedded = counting.items()
    print(f"killed {kill_point}: {interrupted} of {len(texts)} items stored; the re-run embedded {embedded}")
    assert embedded == len(texts) - interrupted  # no model work for what the killed run stored

    count, vectors = stored_rows(str(db))
    reference = multiembed.load("text", model, device="cpu").encode(texts)
    assert count == len(vectors) == len(texts) and set(vectors) == set(reference.ids)  # each item once
    stored = np.array([vectors[key] for key in reference.ids], dtype=np.float32)
    np.testing.assert_allclose(stored, reference.vectors, rtol=0, atol=1e-6)
