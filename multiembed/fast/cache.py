"""Where exported fast models, their gate reports and auto's decisions are kept, and how they are named.

An export is made once, from the local model directory (nothing is ever downloaded), and found again
by a key: a hash of the saved encoder identity (weights fingerprint, options, details, outputs), the
kind of model (float or int8) and the versions of the libraries that made it. It is kept next to the
model (``<model dir>/openvino/<key>/``, a folder the weights fingerprint skips) when that directory
is writable, else under ``$MULTIEMBED_CACHE/openvino/`` (default ``~/.cache/multiembed``). Lookups
try both places. Every write is atomic: a temporary directory or file, renamed into place, so an
interrupted export leaves nothing that looks complete and two processes racing keep one result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multiembed.errors import BackendError

#: bumped when the layout or the way exports are made changes (old entries are then ignored)
FORMAT = 1
#: the file that marks a complete entry and describes it
MANIFEST = "export.json"
#: the identity keys that decide the vectors (backend and dtype are the export's own)
IDENTITY_KEYS = ("modality", "weights", "outputs", "options", "details")


def identity_of(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``Encoder.config()`` an export depends on; the model id only without a fingerprint."""
    identity = {key: config.get(key) for key in IDENTITY_KEYS}
    if not config.get("weights"):
        identity["model"] = config.get("model")
    return identity


def key_of(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    text = json.dumps([FORMAT, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def fallback_root() -> Path:
    """The per-user cache: ``$MULTIEMBED_CACHE`` or ``~/.cache/multiembed``."""
    override = os.environ.get("MULTIEMBED_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "multiembed"


def roots(model_path: str) -> list[Path]:
    """Places to look in and write to, in order: next to the model, then the per-user cache."""
    places: list[Path] = []
    if model_path:
        model = Path(model_path)
        places.append((model if model.is_dir() else model.parent) / "openvino")
    places.append(fallback_root() / "openvino")
    return places


def _writable(root: Path) -> bool:
    """Writable by us and not marked read-only (no write bit, which even root respects here)."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        mode = existing.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(existing, os.W_OK)


def find(key: str, places: list[Path]) -> Path | None:
    """The complete entry for ``key`` in the first place that has one."""
    for root in places:
        entry = root / key
        if (entry / MANIFEST).is_file():
            return entry
    return None


def store(key: str, places: list[Path], write: Callable[[Path], None]) -> Path:
    """Write an entry with ``write(temporary_dir)`` into the first writable place, then rename it in.

    If another process finished the same entry first, its entry is kept and ours discarded.
    """
    problems: list[str] = []
    for root in places:
        if not _writable(root):
            problems.append(f"{root}: not writable")
            continue
        try:
            root.mkdir(parents=True, exist_ok=True)
            temporary = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        except OSError as error:
            problems.append(f"{root}: {error.strerror or error}")
            continue
        try:
            write(temporary)
            target = root / key
            try:
                temporary.rename(target)
            except OSError:
                if not (target / MANIFEST).is_file():
                    raise
                shutil.rmtree(temporary, ignore_errors=True)
            return target
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    raise BackendError(
        "nowhere to keep the exported model (" + "; ".join(problems) + "); set MULTIEMBED_CACHE to a "
        "writable directory"
    )


def write_json(path: Path, data: dict[str, Any]) -> bool:
    """Atomically (temporary file + rename) write JSON; False if the directory cannot be written."""
    try:
        if not _writable(path.parent):
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(data, stream, indent=2, sort_keys=True)
        os.replace(temporary, path)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return False


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is missing or not readable JSON (then it is remade)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def store_json(name: str, places: list[Path], data: dict[str, Any]) -> Path | None:
    """``name`` written atomically into the first writable place; None when none is."""
    for root in places:
        if write_json(root / name, data):
            return root / name
    return None


def find_json(name: str, places: list[Path]) -> tuple[Path, dict[str, Any]] | None:
    """The first readable ``name`` among the places, with its content."""
    for root in places:
        data = read_json(root / name)
        if data is not None:
            return root / name, data
    return None
