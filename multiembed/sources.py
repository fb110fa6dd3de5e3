"""Turn what users point at (values, files, folders, stdin) into named items.

Every item carries a ``source`` string so that an error can always say which input it is about.
Nothing here decodes content: that is the modality's ``load``, which runs per item and may fail alone.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from multiembed.errors import ConfigError, InputError

if TYPE_CHECKING:
    from multiembed.registry import ModalitySpec


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


def _stdin_paths(stream: IO[bytes]) -> Iterator[Item]:
    for item in read_lines(stream, "stdin"):
        value = item.value
        path = Path(value if isinstance(value, str) else value.decode("utf-8", "replace"))
        yield Item(str(path), path)


def expand(modality: str | ModalitySpec, target: str, *, stdin: IO[bytes] | None = None) -> Iterator[Item]:
    """Items for one command-line argument: a folder, a file or ``-`` (stdin), as the modality reads them.

    A folder is searched recursively for the modality's extensions. A file is one item, or one item
    per line for line-oriented modalities (text). ``-`` is one text per line (text) or one path per
    line. The CLI, the examples and the Ray path all take their inputs from here.
    """
    from multiembed.registry import get

    spec = get(modality) if isinstance(modality, str) else modality
    if target == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        yield from read_lines(stream, "stdin") if spec.file_items == "lines" else _stdin_paths(stream)
        return
    path = Path(target)
    if path.is_dir():
        for file in walk_files(path, spec.extensions):
            yield Item(str(file), file)
    elif path.is_file():
        if spec.file_items == "lines":
            with path.open("rb") as stream:
                yield from read_lines(stream, str(path))
        else:
            yield Item(str(path), path)
    elif path.exists():
        raise ConfigError(f"{target}: not a regular file or folder")
    else:
        raise ConfigError(f"no such file or directory: {target}")


def expand_all(modality: str | ModalitySpec, targets: Iterable[str]) -> Iterator[Item]:
    """:func:`expand` over several arguments, in order."""
    for target in targets:
        yield from expand(modality, target)
