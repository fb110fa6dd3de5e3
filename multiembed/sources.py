"""Turn what users point at (values, files, folders, stdin) into named items.

Every item carries a ``source`` string so that an error can always say which input it is about.
Nothing here decodes content: that is the modality's ``load``, which runs per item and may fail alone.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NamedTuple

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
            yield Item(path_name(value), value)
        else:
            yield Item(f"#{position}", value)


def path_name(path: Path | str) -> str:
    """A path as the source recorded for it: its text, or, for a file name that is not UTF-8
    (``m\\xffname.jpg``), that text with the odd bytes escaped. Milvus, Parquet and JSON hold
    only valid UTF-8; the raw name (with surrogates) would fail the whole write, not one item."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


def unreadable(error: OSError) -> InputError:
    """The per-item error for a file that exists in the input but cannot be read."""
    return InputError(f"cannot read file ({error.strerror or error})")


def too_large(size: int, limit: int) -> InputError:
    """The per-item error for a file over the modality's ``max_bytes``."""
    return InputError(f"file too large: {size:,} bytes, over the limit of {limit:,} (max_bytes=)")


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO"), from its ``st_mode``."""
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def open_regular(path: Path) -> BinaryIO:
    """Open a file for reading only if it is a regular file, after following symlinks.

    FIFOs, devices (``/dev/zero`` behind a ``z.wav`` link) and sockets are refused as an item
    error instead of blocking forever or being read until memory runs out. The open itself does
    not block (``O_NONBLOCK``), so a FIFO without a writer is refused at once.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.open(path, flags)
    except OSError as error:
        raise unreadable(error) from None
    try:
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"not a regular file ({file_kind(mode)})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(handle, True)
    except BaseException:
        os.close(handle)
        raise
    # Outside the try: once the file object exists it owns the descriptor, and a Ctrl+C landing
    # just after it was made would otherwise close the descriptor twice. The second close failed
    # with EBADF, and that OSError replaced the KeyboardInterrupt: the run carried on with one
    # "failed" item instead of stopping (or, with the number reused, closed another file).
    return os.fdopen(handle, "rb")


def read_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """A regular file's bytes, at most ``max_bytes`` of them, or the InputError that says why not."""
    with open_regular(path) as stream:
        size = os.fstat(stream.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise too_large(size, max_bytes)
        try:
            data = stream.read() if max_bytes is None else stream.read(max_bytes + 1)
        except OSError as error:
            raise unreadable(error) from None
    if max_bytes is not None and len(data) > max_bytes:  # it grew, or reports no size (/proc)
        raise too_large(len(data), max_bytes)
    return data


def hash_file(path: Path, max_bytes: int | None = None, chunk: int = 1 << 20) -> str:
    """sha256 of a regular file, read in chunks (media files can be large), bounded by ``max_bytes``."""
    digest = hashlib.sha256()
    read = 0
    with open_regular(path) as stream:
        size = os.fstat(stream.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise too_large(size, max_bytes)
        try:
            while block := stream.read(chunk):
                read += len(block)
                if max_bytes is not None and read > max_bytes:
                    raise too_large(read, max_bytes)
                digest.update(block)
        except OSError as error:
            raise unreadable(error) from None
    return digest.hexdigest()


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


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read (to look for a byte-order mark), put back."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        read1 = getattr(self._rest, "read1", None)  # what has arrived, not a full buffer (tail -f | ...)
        data = read1(len(buffer)) if read1 is not None else self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_lines(stream: IO[bytes], name: str) -> Iterator[Item]:
    """One item per non-blank line, named ``name:LINE``.

    UTF-8 lines that do not decode stay bytes, so load() reports them one by one. A UTF-16/32 file
    (announced by its byte-order mark) is decoded as such, never split at 0x0A bytes into mojibake.
    """
    from multiembed.texts import binary_kind, encoding_of, not_valid_text

    head = stream.read(16)
    kind = binary_kind(head)
    if kind is not None:  # one failed item for the whole file, and the run goes on
        yield Item(name, Refused(f"{kind}, not a text file of lines: give it with its own --modality"))
        return
    encoding = encoding_of(head)
    if encoding.startswith("utf-8"):
        lines = _byte_lines(head.removeprefix(codecs.BOM_UTF8), stream)
        for number, raw in enumerate(lines, start=1):
            if isinstance(raw, LineTooLong):
                yield Item(f"{name}:{number}", raw)
                continue
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                value: str | bytes = line.decode("utf-8")
            except UnicodeDecodeError:
                value = line
            yield Item(f"{name}:{number}", value)
        return
    text = io.TextIOWrapper(io.BufferedReader(_Prefixed(head, stream)), encoding=encoding)
    number = 0
    try:
        for number, decoded in enumerate(text, start=1):
            if decoded.strip():
                yield Item(f"{name}:{number}", decoded.rstrip("\r\n"))
    except UnicodeDecodeError as error:  # the decoder reads ahead: the bad bytes are at or after this line
        reason = f"{not_valid_text(encoding, error.reason)} at or after this line; the rest is not read"
        yield Item(f"{name}:{number + 1}", Refused(reason))


#: a line longer than this is reported, not held: it is read past in chunks (``LineTooLong``)
MAX_LINE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Refused:
    """Stands in for input that is not text at all (a PNG given as a file of lines, a UTF-16 file
    that stops decoding): the loader reports it as an item error, so the run goes on."""

    reason: str


@dataclass(frozen=True)
class LineTooLong:
    """Stands in for a line over :data:`MAX_LINE_BYTES`; loaders report it as an item error."""

    size: int


def _byte_lines(head: bytes, rest: IO[bytes]) -> Iterator[bytes | LineTooLong]:
    """Lines of ``head`` + ``rest`` as bytes, streamed; each line's memory is bounded."""
    reader = io.BufferedReader(_Prefixed(head, rest))
    while line := reader.readline(MAX_LINE_BYTES + 1):
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            yield line
            continue
        size = len(line)
        while (more := reader.readline(1 << 20)) and not more.endswith(b"\n"):
            size += len(more)
        yield LineTooLong(size + len(more))


def _stdin_paths(stream: IO[bytes]) -> Iterator[Item]:
    for item in read_lines(stream, "stdin"):
        value = item.value
        if isinstance(value, (Refused, LineTooLong)):
            yield Item(item.source, Refused("not a list of file paths, one per line"))
            continue
        path = Path(value if isinstance(value, str) else value.decode("utf-8", "replace"))
        yield Item(path_name(path), path)


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
            yield Item(path_name(file), file)
    elif path.is_file():
        if spec.file_items == "lines":
            with path.open("rb") as stream:
                yield from read_lines(stream, path_name(path))
        else:
            yield Item(path_name(path), path)
    elif path.exists():
        raise ConfigError(f"{target}: not a regular file or folder")
    else:
        raise ConfigError(f"no such file or directory: {target}")


def _count_lines(path: Path) -> int:
    """Non-blank lines, counted in bytes (fast; UTF-16 files are counted after decoding)."""
    with path.open("rb") as stream:
        return sum(1 for _ in read_lines(stream, str(path)))


def count_items(modality: str | ModalitySpec, targets: Iterable[str]) -> int | None:
    """How many items :func:`expand_all` will give, when that is cheap to know (None for stdin).

    It sizes the progress bar (total, percentage, ETA). Folders are walked once more; line files
    are read once more, which costs little next to embedding them.
    """
    from multiembed.registry import get

    spec = get(modality) if isinstance(modality, str) else modality
    total = 0
    for target in targets:
        path = Path(target)
        if target == "-" or not (path.is_dir() or path.is_file()):
            return None
        if path.is_dir():
            total += sum(1 for _ in walk_files(path, spec.extensions))
        else:
            total += _count_lines(path) if spec.file_items == "lines" else 1
    return total


def expand_all(modality: str | ModalitySpec, targets: Iterable[str]) -> Iterator[Item]:
    """:func:`expand` over several arguments, in order."""
    for target in targets:
        yield from expand(modality, target)
