"""Resumable sharded encode: a long run written as files that each hold one range of the inputs.

``encode_shards`` splits the input stream into ranges of ``shard_size`` items and writes each as
``part-<first>-<last>.<format>`` (positions in the stream, counted from 0), atomically: the rows go to a
temporary file that is renamed into place once every item of the range is embedded or has failed.
``manifest.json`` holds the settings and the encoder identity; ``shards.jsonl`` records each finished
shard (its range, rows, failures, and a fingerprint of its inputs: their names, and the text of
text lines), a line appended and synced after each shard.

Run again over the same inputs, a shard the manifest records (and whose file is there, for the same
inputs) is skipped before anything is read or embedded; the rest are embedded again. A run killed at
any moment leaves finished shards and at most a temporary file (removed by the next run) or a shard
renamed but not yet recorded (embedded again, replacing it). A shard replaced by one over a different
range (the inputs grew or changed) is removed with its record, so every item is in exactly one shard.
One run at a time writes a folder (a lock held while it runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiembed.embeddings import Embeddings, ItemError
from multiembed.errors import ConfigError, SchemaMismatchError
from multiembed.formats import FORMATS
from multiembed.identity import mismatches
from multiembed.output import NpyWriter, Writer, atomic_path, open_writer
from multiembed.sources import Item, as_items

if TYPE_CHECKING:
    from multiembed.encoder import Encoder, Role

MANIFEST = "manifest.json"
JOURNAL = "shards.jsonl"
LOCK = ".lock"
KIND = "multiembed-shards"
_SHARD_NAME = re.compile(r"^part-(\d+)-(\d+)\.(parquet|npy|jsonl)$")
#: what output.atomic_path leaves behind when its process is killed: ``.<target>.<hex>.tmp``, for a
#: shard, the manifest or the journal (a kill while either is rewritten must not lock the folder)
_TEMPORARY = re.compile(
    r"^\.(part-\d+-\d+\.(parquet|npy|jsonl)|manifest\.json|shards\.jsonl)\.[0-9a-f]+\.tmp$"
)


def shard_name(start: int, end: int, fmt: str) -> str:
    """``part-000000-000999.parquet``: the file of inputs ``start`` to ``end`` (inclusive)."""
    return f"part-{start:06d}-{end:06d}.{fmt}"


def fingerprint(items: Iterable[Item]) -> str:
    """What identifies a range of inputs without reading files: their names, and the text of lines."""
    digest = hashlib.sha256()
    for item in items:
        value = item.value if isinstance(item.value, (str, bytes)) else b""
        digest.update(item.source.encode("utf-8", "surrogatepass") + b"\0")
        digest.update(value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value)
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class ShardReport:
    """A sharded run: shards written now and found finished, and totals over all shards."""

    directory: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    items: int = 0
    rows: int = 0
    #: failures of every shard, this run's and those recorded by earlier runs
    errors: list[ItemError] = field(default_factory=list)


@dataclass
class _Shard:
    start: int
    end: int
    name: str
    inputs: str
    #: where the shard's items begin in the stream handed to the encoder (finished shards are not in it)
    fed: int = 0
    rows: int = 0
    errors: list[ItemError] = field(default_factory=list)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    writer: Writer | None = None

    @property
    def count(self) -> int:
        return self.end - self.start + 1

    @property
    def done(self) -> bool:
        return self.rows + len(self.errors) == self.count

    def take(self, part: Embeddings) -> Embeddings:
        """This shard's rows and failures of one window, at their positions in the whole input."""
        last = self.fed + self.count - 1
        rows = [row for row, index in enumerate(part.indices) if self.fed <= index <= last]
        shift = self.start - self.fed
        return Embeddings(
            outputs={
                spec.name: [part.outputs[spec.name][row] for row in rows]
                if spec.kind == "multi"
                else part.outputs[spec.name][rows]
                for spec in part.specs
            },
            specs=part.specs,
            ids=[part.ids[row] for row in rows],
            sources=[part.sources[row] for row in rows],
            indices=[part.indices[row] + shift for row in rows],
            errors=[
                ItemError(error.index + shift, error.source, error.reason)
                for error in part.errors
                if self.fed <= error.index <= last
            ],
            raws=[part.raws[row] for row in rows] if part.raws else [],
            modality=part.modality,
            model=part.model,
            config=part.config,
        )

    def record(self) -> dict[str, Any]:
        failed = [[error.index, error.source, error.reason] for error in self.errors]
        return {
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "rows": self.rows,
            "failed": failed,
            "inputs": self.inputs,
        }


class _Folder:
    """The shard folder: its manifest (settings and identity), its journal of shards, its files.

    ``manifest.json`` is written once. ``shards.jsonl`` gets one line per finished shard (and one
    per shard it replaces), appended and synced, so recording costs the same at the 10,000th shard
    as at the first; a line cut short by a kill is dropped when the folder is next opened, and a
    complete run rewrites the journal compactly.
    """

    def __init__(self, directory: Path, shard_size: int, fmt: str, config: dict[str, Any]) -> None:
        self.directory = directory
        self.path = directory / MANIFEST
        self.journal = directory / JOURNAL
        self._open(shard_size, fmt, config)
        self.shards = read_shards(directory)

    @staticmethod
    def check(directory: Path) -> None:
        """Refuse a file, or a folder holding anything but shards (files here may be replaced or removed)."""
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"{directory} is not a folder; sharded output is a folder of shards")
        ours = (MANIFEST, JOURNAL, LOCK)
        others = [
            path.name
            for path in (directory.iterdir() if directory.is_dir() else ())
            if path.name not in ours and not _SHARD_NAME.match(path.name) and not _TEMPORARY.match(path.name)
        ]
        if others:
            raise ConfigError(
                f"{directory} holds files other than shards ({', '.join(sorted(others)[:3])}); "
                "write shards into a new folder"
            )

    def _open(self, shard_size: int, fmt: str, config: dict[str, Any]) -> None:
        """Write the manifest of a new folder, or check an existing one's against this run."""
        if not self.path.exists():
            fresh = {"kind": KIND, "version": 1, "shard_size": shard_size, "format": fmt, "config": config}
            with atomic_path(self.path) as temporary:
                temporary.write_text(json.dumps(fresh, indent=1, sort_keys=True) + "\n")
            self.journal.unlink(missing_ok=True)  # records of a folder whose manifest was never written
            return
        try:
            manifest = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
                raise ValueError("not a multiembed shard manifest")
        except ValueError as error:
            raise ConfigError(f"{self.path} is damaged ({error}); use a new folder") from None
        for key, value in (("shard_size", shard_size), ("format", fmt)):
            if manifest.get(key) != value:
                raise ConfigError(
                    f"{self.directory} was written with {key} {manifest.get(key)!r}, not {value!r}; "
                    "resume with the same settings or use a new folder"
                )
        problems = mismatches(manifest["config"], config, where="shards")
        if problems:
            raise SchemaMismatchError(f"{self.directory}: " + "; ".join(problems))
        if self.journal.exists():  # a kill mid-append leaves a line without its end: drop it
            data = self.journal.read_bytes()
            if data and not data.endswith(b"\n"):
                with self.journal.open("r+b") as stream:
                    stream.truncate(data.rfind(b"\n") + 1)

    def finished(self, name: str, inputs: str) -> bool:
        record = self.shards.get(name)
        return record is not None and record["inputs"] == inputs and (self.directory / name).is_file()

    def _append(self, lines: list[dict[str, Any]]) -> None:
        with self.journal.open("a", encoding="utf-8") as stream:
            stream.write("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
            stream.flush()
            os.fsync(stream.fileno())

    def commit(self, shard: _Shard) -> None:
        """Record a shard renamed into place, and drop the shards it replaces (overlapping ranges)."""
        replaced = [
            name
            for name, record in self.shards.items()
            if name != shard.name and record["start"] <= shard.end and shard.start <= record["end"]
        ]
        self._append([shard.record(), *({"removed": name} for name in replaced)])
        self.shards[shard.name] = shard.record()
        for name in replaced:
            del self.shards[name]
            (self.directory / name).unlink(missing_ok=True)

    def sweep(self, planned: set[str]) -> None:
        """After a complete run: drop shards of inputs no longer given, unrecorded files and dead
        temporaries, and rewrite the journal with one line per shard."""
        self.shards = {name: record for name, record in self.shards.items() if name in planned}
        with atomic_path(self.journal) as temporary:
            records = (self.shards[name] for name in sorted(self.shards))
            temporary.write_text("".join(json.dumps(record, sort_keys=True) + "\n" for record in records))
        for path in self.directory.iterdir():
            if (_SHARD_NAME.match(path.name) and path.name not in self.shards) or _TEMPORARY.match(path.name):
                path.unlink(missing_ok=True)


def read_shards(directory: str | Path) -> dict[str, dict[str, Any]]:
    """The finished shards a folder records: name -> range, rows, failures, input fingerprint."""
    shards: dict[str, dict[str, Any]] = {}
    journal = Path(directory) / JOURNAL
    lines = journal.read_text(encoding="utf-8").splitlines() if journal.exists() else []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # cut short by a kill (the last line only)
            continue
        if "removed" in record:
            shards.pop(record["removed"], None)
        else:
            shards[record["name"]] = record
    return shards


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold the folder's lock (released by the OS however the run ends); refuse if another run has it."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK).open("a") as lock:
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(f"another run is writing {directory}; wait for it to finish") from None
        for path in directory.iterdir():  # temporaries of killed runs: no other run is writing
            if _TEMPORARY.match(path.name):
                path.unlink(missing_ok=True)
        yield


def encode_shards(
    encoder: Encoder,
    inputs: Iterable[Any],
    directory: str | Path,
    shard_size: int,
    *,
    fmt: str = "parquet",
    role: Role = "document",
    batch_size: int | None = None,
    progress: bool | None = None,
    total: int | None = None,
) -> ShardReport:
    """Embed ``inputs`` into shards of ``shard_size`` items in ``directory``, skipping finished ones.

    ``total`` (the number of inputs, when known) sizes the progress bar, less the finished shards'.
    """
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise ConfigError(f"shard_size must be an integer >= 1, got {shard_size!r}")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "npy":
        NpyWriter.check(encoder.outputs)
    folder = Path(directory)
    config = encoder.config()
    report = ShardReport(folder)
    _Folder.check(folder)
    with _locked(folder):
        shards = _Folder(folder, shard_size, fmt, config)
        planned: set[str] = set()
        waiting: deque[_Shard] = deque()  # shards whose items go to the encoder, oldest first
        fed = 0

        def plan() -> Iterator[Item]:
            """The items of unfinished shards, in order; finished shards are passed over unread."""
            nonlocal fed
            stream = as_items(inputs)
            for number in itertools.count():
                chunk = list(itertools.islice(stream, shard_size))
                if not chunk:
                    return
                start = number * shard_size
                end = start + len(chunk) - 1
                shard = _Shard(start, end, shard_name(start, end, fmt), fingerprint(chunk), fed)
                planned.add(shard.name)
                report.items += len(chunk)
                if shards.finished(shard.name, shard.inputs):
                    record = shards.shards[shard.name]
                    report.kept.append(shard.name)
                    report.rows += int(record["rows"])
                    report.errors.extend(ItemError(*failure) for failure in record["failed"])
                    continue
                fed += len(chunk)
                waiting.append(shard)
                yield from chunk

        def store(part: Embeddings) -> None:
            """Hand a window's rows to the shards they belong to; finish each shard that is complete."""
            last = max([*part.indices, *(error.index for error in part.errors)], default=-1)
            for shard in list(waiting):
                if shard.fed > last:
                    break
                piece = shard.take(part)
                if shard.writer is None:
                    shard.writer = shard.stack.enter_context(
                        open_writer(folder / shard.name, fmt, encoder.outputs, config)
                    )
                shard.writer.write(piece)
                shard.rows += len(piece)
                shard.errors.extend(piece.errors)
                if shard.done:
                    shard.stack.close()  # the temporary file becomes the shard
                    waiting.remove(shard)
                    shards.commit(shard)
                    report.written.append(shard.name)
                    report.rows += shard.rows
                    report.errors.extend(shard.errors)

        recorded = sum(
            record["end"] - record["start"] + 1
            for name, record in shards.shards.items()
            if (folder / name).is_file()
        )
        remaining = None if total is None else max(total - recorded, 0)
        try:
            for part in encoder.iter_encode(
                plan(), role=role, batch_size=batch_size, progress=progress, total=remaining
            ):
                store(part)
        except BaseException:
            for shard in waiting:  # unfinished: their temporary files go
                shard.stack.__exit__(*sys.exc_info())
            raise
        if waiting:  # every item is embedded or failed, so every shard completes
            raise RuntimeError(f"shard {waiting[0].name} did not receive all its items")
        shards.sweep(planned)
    report.errors.sort(key=lambda error: error.index)
    return report
