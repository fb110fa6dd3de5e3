"""Writers for encode results: parquet, npy and jsonl, each written atomically.

A run writes to a temporary file beside the target and renames it into place, so a crash or a
kill never leaves a half-written output that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from multiembed.embeddings import Embeddings

FORMATS = ("parquet", "npy", "jsonl")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npy": "npy",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def format_for(path: Path, requested: str | None = None) -> str:
    """The output format: the one asked for, else the one the file suffix names."""
    if requested:
        if requested not in FORMATS:
            raise ValueError(f"unknown format {requested!r}; choose one of {', '.join(FORMATS)}")
        return requested
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"cannot tell the output format from {path.name!r}; use a .parquet, .npy or .jsonl "
            "suffix or pass --format"
        ) from None


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path in the target's folder that replaces the target only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def to_arrow(embeddings: Embeddings) -> pa.Table:
    """Columns id, source, modality, model, vector (list<float32>); dim and metric in metadata."""
    vectors = np.ascontiguousarray(embeddings.vectors, dtype=np.float32)
    rows, dim = vectors.shape
    offsets = pa.array(np.arange(0, (rows + 1) * dim, dim, dtype=np.int32))
    vector_column = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))
    table = pa.table(
        {
            "id": pa.array(embeddings.ids, pa.string()),
            "source": pa.array(embeddings.sources, pa.string()),
            "modality": pa.array([embeddings.modality] * rows, pa.string()),
            "model": pa.array([embeddings.model] * rows, pa.string()),
            "vector": vector_column,
        }
    )
    metadata = {"multiembed.dim": str(dim), "multiembed.metric": embeddings.metric}
    return table.replace_schema_metadata(metadata)


def _write_parquet(embeddings: Embeddings, path: Path) -> None:
    pq.write_table(to_arrow(embeddings), path)


def _write_npy(embeddings: Embeddings, path: Path) -> None:
    with path.open("wb") as stream:
        np.save(stream, np.asarray(embeddings.vectors, dtype=np.float32))


def _write_jsonl(embeddings: Embeddings, path: Path) -> None:
    with path.open("w", encoding="utf-8") as stream:
        _dump_jsonl(embeddings, stream)


def _dump_jsonl(embeddings: Embeddings, stream: IO[str]) -> None:
    for row in embeddings.to_milvus_rows():
        row["vector"] = row["vector"].tolist()
        stream.write(json.dumps(row, ensure_ascii=False) + "\n")


_WRITERS: dict[str, Callable[[Embeddings, Path], None]] = {
    "parquet": _write_parquet,
    "npy": _write_npy,
    "jsonl": _write_jsonl,
}


def write_embeddings(embeddings: Embeddings, path: str | Path, fmt: str | None = None) -> Path:
    """Write the vectors that succeeded; ``npy`` holds only the matrix, in input order."""
    target = Path(path)
    writer = _WRITERS[format_for(target, fmt)]
    with atomic_path(target) as temporary:
        writer(embeddings, temporary)
    return target
