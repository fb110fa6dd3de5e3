"""Writers for encode results: parquet, npy and jsonl, streamed and written atomically.

A run streams its windows into a temporary file beside the target and renames it into place at
the end, so memory does not grow with the number of items, and a crash or a kill never leaves a
half-written output that looks complete. Each output kind has its column form: dense as
``list<float32>``, sparse as the JSON ``{"dimension": weight}`` text pymilvus' bulk writer uses,
multi-vector as ``list<list<float32>>``. Parquet files carry the encoder identity as metadata.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import stat
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from multiembed.embeddings import Embeddings, field_name
from multiembed.errors import ConfigError
from multiembed.formats import FORMATS, format_for

__all__ = ["FORMATS", "Writer", "format_for", "open_writer", "to_arrow", "write_embeddings"]
from multiembed.outputs import OutputSpec, sparse_row_dict
from multiembed.sources import file_kind

CONFIG_KEY = b"multiembed.config"


def _new_file(target: Path) -> str:
    """A new hidden file beside ``target``, created with mode 0o666 so the kernel applies the umask.

    (``mkstemp`` makes 0600 files, and reading the umask means setting it for a moment, which other
    threads of the host application would see.)
    """
    for _ in range(100):
        candidate = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return str(candidate)
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {target}")


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path in the target's folder that replaces the target only on success.

    The file gets the permissions a newly created file gets under the user's umask, as any other
    output would. A target that exists and is not a regular file is refused first: renaming over
    ``/dev/null``, ``/dev/stdout`` or a pipe would replace it with a plain file.
    """
    check_output_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    temporary = ""
    try:  # made inside the try: a Ctrl+C landing just after it must not leave it behind
        temporary = _new_file(target)
        yield Path(temporary)
        os.replace(temporary, target)
    finally:
        if temporary:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    _remove_stale_temporaries(target, started)


def check_output_target(target: Path) -> None:
    """Refuse an output path that names a folder, a device, a FIFO or a socket (ConfigError)."""
    try:
        mode = target.stat().st_mode  # follows a symlink: /dev/stdout -> /proc/self/fd/1 -> a pipe
    except FileNotFoundError:
        return
    except OSError as error:
        raise ConfigError(f"cannot write {target}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        kind = file_kind(mode)
        raise ConfigError(f"cannot write {target}: it is {kind}, and the output is written as a new file")


def _remove_stale_temporaries(target: Path, before: float) -> None:
    """Temporary files of earlier runs on ``target`` that were killed (SIGKILL skips ``finally``).

    Only once this run's file is in place, and only files untouched since before it started, so a
    file another live writer is still filling is left alone.
    """
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if stale.stat().st_mtime < before:
                stale.unlink()


class Writer(ABC):
    """Receives a run's results window by window; ``finish`` completes the file."""

    def __init__(self, path: Path, specs: Sequence[OutputSpec], config: dict[str, Any]) -> None:
        self.path = path
        self.specs = tuple(specs)
        self.config = config
        self.rows = 0

    @abstractmethod
    def write(self, part: Embeddings) -> None:
        """Append the rows of one window."""

    @abstractmethod
    def finish(self) -> None:
        """Flush and close; called once, also after a failure (then the file is discarded)."""


# ---- parquet ------------------------------------------------------------------------------------
_ARROW_TYPES = {
    "dense": pa.list_(pa.float32()),
    "sparse": pa.string(),
    "multi": pa.list_(pa.list_(pa.float32())),
}


def _dense_column(matrix: np.ndarray) -> pa.Array:
    vectors = np.ascontiguousarray(matrix, dtype=np.float32)
    rows, dim = vectors.shape
    offsets = pa.array(np.arange(0, (rows + 1) * dim, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))


def _column(spec: OutputSpec, value: Any, rows: int) -> pa.Array:
    if spec.kind == "dense":
        return _dense_column(value)
    if spec.kind == "sparse":
        return pa.array([json.dumps(sparse_row_dict(value, row)) for row in range(rows)], pa.string())
    return pa.array([matrix.tolist() for matrix in value], _ARROW_TYPES["multi"])


def arrow_schema(specs: Sequence[OutputSpec], config: dict[str, Any]) -> pa.Schema:
    """id, source, modality, model, then one column per output; the encoder identity in metadata."""
    fields = [pa.field(name, pa.string()) for name in ("id", "source", "modality", "model")]
    fields += [
        pa.field(field_name(spec, index == 0), _ARROW_TYPES[spec.kind]) for index, spec in enumerate(specs)
    ]
    metadata = {
        b"multiembed.dim": str(specs[0].dim).encode(),
        b"multiembed.metric": specs[0].metric.encode(),
        b"multiembed.outputs": json.dumps([spec.describe() for spec in specs]).encode(),
        CONFIG_KEY: json.dumps(config, sort_keys=True).encode(),
    }
    return pa.schema(fields, metadata=metadata)


def to_arrow(embeddings: Embeddings) -> pa.Table:
    """One result as an Arrow table in the parquet layout."""
    schema = arrow_schema(embeddings.specs, embeddings.config)
    rows = len(embeddings)
    columns = [
        pa.array(embeddings.ids, pa.string()),
        pa.array(embeddings.sources, pa.string()),
        pa.array([embeddings.modality] * rows, pa.string()),
        pa.array([embeddings.model] * rows, pa.string()),
    ]
    columns += [_column(spec, embeddings.outputs[spec.name], rows) for spec in embeddings.specs]
    return pa.Table.from_arrays(columns, schema=schema)


class ParquetWriter(Writer):
    def __init__(self, path: Path, specs: Sequence[OutputSpec], config: dict[str, Any]) -> None:
        super().__init__(path, specs, config)
        self._writer = pq.ParquetWriter(path, arrow_schema(self.specs, config))

    def write(self, part: Embeddings) -> None:
        if len(part):
            self._writer.write_table(to_arrow(part))
            self.rows += len(part)

    def finish(self) -> None:
        self._writer.close()


# ---- jsonl --------------------------------------------------------------------------------------
def _json_value(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


class JsonlWriter(Writer):
    def __init__(self, path: Path, specs: Sequence[OutputSpec], config: dict[str, Any]) -> None:
        super().__init__(path, specs, config)
        self._stream: IO[str] = path.open("w", encoding="utf-8")

    def write(self, part: Embeddings) -> None:
        for index in range(len(part)):
            row = {key: _json_value(value) for key, value in part.row(index).items()}
            self._stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += len(part)

    def finish(self) -> None:
        self._stream.close()


# ---- npy ----------------------------------------------------------------------------------------
_NPY_HEADER = 128  # magic (6) + version (2) + length (2) + dict text padded with spaces and "\n"


def _npy_header(rows: int, dim: int) -> bytes:
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    body = text.ljust(_NPY_HEADER - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class NpyWriter(Writer):
    """One dense float32 matrix, rows appended as they come; the shape is written into the header last."""

    @staticmethod
    def check(specs: Sequence[OutputSpec]) -> None:
        """Refuse, before any file is made, what a single float32 matrix cannot hold."""
        if len(specs) != 1 or specs[0].kind != "dense":
            kinds = ", ".join(f"{spec.name} ({spec.kind})" for spec in specs)
            raise ConfigError(
                f".npy holds one dense matrix, and this encoder emits {kinds}; write .parquet or "
                ".jsonl instead"
            )

    def __init__(self, path: Path, specs: Sequence[OutputSpec], config: dict[str, Any]) -> None:
        self.check(specs)
        super().__init__(path, specs, config)
        self.dim = specs[0].dim
        self._stream: IO[bytes] = path.open("wb")
        self._stream.write(_npy_header(0, self.dim))

    def write(self, part: Embeddings) -> None:
        matrix = np.ascontiguousarray(part.vectors, dtype="<f4")
        self._stream.write(matrix.tobytes())
        self.rows += len(part)

    def finish(self) -> None:
        try:
            self._stream.seek(0)
            self._stream.write(_npy_header(self.rows, self.dim))
        finally:
            self._stream.close()


_WRITERS: dict[str, type[Writer]] = {"parquet": ParquetWriter, "npy": NpyWriter, "jsonl": JsonlWriter}


@contextlib.contextmanager
def open_writer(
    path: str | Path, fmt: str | None, specs: Sequence[OutputSpec], config: dict[str, Any]
) -> Iterator[Writer]:
    """A streaming writer into a temporary file that becomes ``path`` only if the block succeeds."""
    target = Path(path)
    writer_class = _WRITERS[format_for(target, fmt)]
    if writer_class is NpyWriter:
        NpyWriter.check(specs)
    with atomic_path(target) as temporary:
        writer = writer_class(temporary, specs, config)
        try:
            yield writer
        finally:
            writer.finish()


def write_embeddings(embeddings: Embeddings, path: str | Path, fmt: str | None = None) -> Path:
    """Write the rows that succeeded; ``npy`` holds only the dense matrix, in input order."""
    with open_writer(path, fmt, embeddings.specs, embeddings.config) as writer:
        writer.write(embeddings)
    return Path(path)
