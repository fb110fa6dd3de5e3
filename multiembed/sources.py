"""Turn what users point at (values, files, folders, stdin) into named items.

Every item carries a ``source`` string so that an error can always say which input it is about.
Nothing here decodes content: that is the modality's ``load``, which runs per item and may fail alone.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

from multiembed.errors import InputError


@dataclass(frozen=True)
class Item:
    """One input and the name it is reported under (a path, ``file:line``, ``stdin:3`` or ``#7``)."""

    source: str
    value: Any


class Loaded(NamedTuple):
    """A decoded item and its content key (sha256 of its bytes), the Milvus primary key."""

    raw: Any
    key: str


def as_items(inputs: Iterable[Any]) -> Iterator[Item]:
    """Wrap plain values as items; paths are named by themselves, other values by position."""
    for position, value in enumerate(inputs):
        if isinstance(value, Item):
            yield value
        elif isinstance(value, Path):
            yield Item(str(value), value)
        else:
            yield Item(f"#{position}", value)


def unreadable(error: OSError) -> InputError:
    """The per-item error for a file that exists in the input but cannot be read."""
    return InputError(f"cannot read file ({error.strerror or error})")


def read_bytes(path: Path) -> bytes:
    """A file's bytes, or the InputError that names why it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise unreadable(error) from None


def sha256_hex(data: bytes) -> str:
    """Content key for an item: same bytes, same id, whatever the file is called."""
    return hashlib.sha256(data).hexdigest()


def _hidden(name: str) -> bool:
    return name.startswith(".")


def walk_files(root: Path, extensions: frozenset[str]) -> Iterator[Path]:
    """Files under ``root`` with one of ``extensions``, recursively, in a stable sorted order.

    Hidden files and folders are skipped; symlinked folders are followed once, so a link that
    points back up the tree cannot loop forever.
    """
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path) -> Iterator[Path]:
        try:
            info = folder.stat()
        except OSError:
            return
        key = (info.st_dev, info.st_ino)
        if key in seen:
            return
        seen.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            return
        for entry in entries:
            if _hidden(entry.name):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                continue
            if is_dir:
                yield from visit(path)
            elif path.suffix.lower() in extensions:
                yield path

    yield from visit(root)


def read_lines(stream: IO[bytes], name: str) -> Iterator[Item]:
    """One item per non-blank line, named ``name:LINE``; undecodable lines stay bytes for load()."""
    for number, raw in enumerate(stream, start=1):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            value: str | bytes = line.decode("utf-8")
        except UnicodeDecodeError:
            value = line
        yield Item(f"{name}:{number}", value)
