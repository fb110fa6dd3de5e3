"""Model resolution: alias, hub id, packaged copy or local directory -> a local path to load.

Weights are always loaded from a local path, so the libraries underneath never reach for the hub
on their own. The hub is asked only for a model that is neither local nor installed, and never when
offline (``HF_HUB_OFFLINE=1``) - then a missing model is a :class:`ModelNotFoundError` that says how
to pass a local directory, instead of a stack trace from the hub client.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from multiembed.errors import ModelNotFoundError, MultiembedError
from multiembed.registry import ModalitySpec, ModelInfo

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from, and the id to record with its vectors."""

    model_id: str  # hub id for known/hub models, absolute path for local ones
    path: str  # local directory or file holding the weights
    info: ModelInfo | None = None


def hub_offline() -> bool:
    """True when the user has told the Hugging Face libraries not to use the network."""
    return any(
        os.environ.get(name, "").lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def packaged_model_path(package: str) -> str | None:
    """Path of weights shipped inside an installed Python package, or None if not installed."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(module.__file__ or "").parent / "model"
    return str(path) if path.is_dir() else None


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~"))
        or os.sep in name.strip("/").replace("/", "", 1)
        or (Path(name).suffix.lower() in {".pth", ".pt", ".bin", ".safetensors"})
    )


#: how the command line names a local model folder; ``serve`` words it its own way
FOLDER_OPTION = "--model /path/to/folder"


def _offline_help(name: str, why: str, folder: str = "", package: str = "") -> str:
    what = folder or "a folder saved with save_pretrained()/save()"
    install = f"Install its packaged copy (pip install {package}), or pass" if package else "Pass"
    return (
        f"model {name!r} is not available: it is not installed or cached locally and {why}. "
        f"{install} a local folder instead ({FOLDER_OPTION}): {what}; "
        "or point HF_HOME at a cache that holds it."
    )


def download_from_hub(repo_id: str, folder: str = "", package: str = "") -> str:
    """A local snapshot of a hub repo: from the cache when offline, downloaded otherwise."""
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    try:
        if not offline:
            logger.info("fetching %s from the Hugging Face Hub (set HF_HUB_OFFLINE=1 to forbid)", repo_id)
        return snapshot_download(repo_id, local_files_only=offline)
    except Exception as error:  # the hub client raises many types; all mean "not available"
        why = (
            "the Hugging Face Hub is off (HF_HUB_OFFLINE=1)"
            if offline
            else f"the Hugging Face Hub could not be reached ({type(error).__name__})"
        )
        raise ModelNotFoundError(_offline_help(repo_id, why, folder, package)) from None


def local_or_hub(name: str, folder: str) -> str:
    """A local folder as is; a hub id from the Hugging Face cache or, when online, the hub.

    A name that is a path (``./my-model``) and does not exist is a missing folder, said so, not a
    hub id the hub client would refuse with a validation error.
    """
    local = Path(name).expanduser()
    if local.exists():
        return str(local)
    if _looks_like_path(name) or not _HUB_ID.match(name):
        raise ModelNotFoundError(f"model {name!r}: no such file or directory (expected {folder})")
    return download_from_hub(name, folder)


def resolve_model(spec: ModalitySpec, model: str | None) -> ResolvedModel:
    """Find the weights for ``model`` (or the modality's default), local sources first."""
    name = (model or spec.default_model).strip()
    if spec.resolve is not None:
        return spec.resolve(name)
    local = Path(name).expanduser()
    if local.exists():
        return ResolvedModel(str(local.resolve()), str(local.resolve()), spec.model_info(name))
    info = spec.model_info(name)
    if info is not None and info.source != "hub":
        return ResolvedModel(info.hub_id, "", info)
    if info is not None and info.packaged:
        packaged = packaged_model_path(info.packaged)
        if packaged is not None:
            return ResolvedModel(info.hub_id, packaged, info)
    if info is None and (_looks_like_path(name) or not _HUB_ID.match(name)):
        known = ", ".join(m.alias for m in spec.models)
        raise ModelNotFoundError(
            f"model {name!r} for modality {spec.name!r}: no such file or directory, and not a "
            f"known alias ({known}) or hub id"
        )
    hub_id = info.hub_id if info is not None else name
    package = info.packaged.replace("_", "-") if info is not None and info.packaged else ""
    return ResolvedModel(hub_id, download_from_hub(hub_id, spec.local_folder, package), info)


@contextlib.contextmanager
def loading(model_id: str, what: str, path: str | None = None) -> Iterator[None]:
    """Any failure while reading a model becomes one :class:`ModelNotFoundError` naming it.

    Libraries raise anything from ``OSError`` to ``KeyError`` (``UnpicklingError``,
    ``SafetensorError``) for a damaged or foreign directory; the user needs one line saying what
    could not be loaded and why. When ``path`` is given, its weights files are checked one by one
    so the line names the damaged file instead of the library's symptom.
    """
    try:
        yield
    except MultiembedError:
        raise
    except Exception as error:
        damaged = diagnose_weights(path) if path else None
        if damaged is not None:  # "FILE: reason"; the model id only when the path doesn't say it
            message = damaged if damaged.startswith(model_id) else f"{model_id}: {damaged}"
            raise ModelNotFoundError(message) from None
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        raise ModelNotFoundError(
            f"{model_id}: cannot load as {what} ({type(error).__name__}: {first_line})"
        ) from None


def _weights_problem(file: Path) -> str | None:
    """Why one weights file cannot be loaded safely, reading as little of it as possible."""
    if file.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(file), "pt"):
                return None
        except Exception as error:
            return f"damaged or truncated safetensors file ({error})"
    if file.suffix.lower() in {".bin", ".pth", ".pt", ".ckpt"}:
        import pickle

        import torch

        try:
            try:
                torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
                torch.load(file, map_location="cpu", weights_only=True)
            return None
        except pickle.UnpicklingError:
            return "refused: it is a pickle that would run code or build objects (only weights are loaded)"
        except Exception as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            return f"damaged or truncated weights file ({reason})"
    return None


def diagnose_weights(path: str) -> str | None:
    """``FILE: what is wrong`` for the first weights file under ``path`` that cannot be loaded."""
    for file in _weight_files(Path(path)):
        problem = _weights_problem(file)
        if problem is not None:
            return f"{file}: {problem}"
    return None


WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".onnx", ".msgpack", ".h5"})
_SAMPLE = 1 << 20
_MAX_WEIGHT_FILES = 256


#: exports a folder may also hold (ONNX, OpenVINO, TensorFlow, Flax) that no loader here reads
_EXPORT_FOLDERS = {"onnx", "openvino", "tf", "flax"}


def _read_by_loaders(file: Path) -> bool:
    """Weights the torch loaders read: a hub snapshot and a packaged copy of one model agree on these."""
    suffix = file.suffix.lower()
    if any(part.lower() in _EXPORT_FOLDERS for part in file.parts[:-1]):
        return False
    if suffix == ".bin":
        return file.name.startswith("pytorch_model")
    return suffix in {".safetensors", ".pth", ".pt", ".ckpt"}


def _weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    files = (
        file
        for file in sorted(path.rglob("*"))
        if _read_by_loaders(file) and not any(part.startswith(".") for part in file.relative_to(path).parts)
    )
    return [file for _, file in zip(range(_MAX_WEIGHT_FILES), files, strict=False) if file.is_file()]


def weights_fingerprint(path: str) -> str | None:
    """A cheap fingerprint of the weights at ``path``: names, sizes, first and last MiB of each file.

    It identifies the weights wherever they are moved, without hashing gigabytes; changed weights
    (a fine-tune, another checkpoint) change their first bytes. None when there is nothing to hash.
    """
    root = Path(path)
    files = _weight_files(root) if path else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        name = file.name if file == root else file.relative_to(root).as_posix()
        digest.update(f"{name}\0{size}\0".encode())
        with file.open("rb") as stream:
            digest.update(stream.read(_SAMPLE))
            if size > 2 * _SAMPLE:
                stream.seek(size - _SAMPLE)
                digest.update(stream.read(_SAMPLE))
    return digest.hexdigest()[:32]
