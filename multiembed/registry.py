"""Modality registry: the one place that maps a modality name to its models and encoder class.

A modality lives in one file under ``multiembed/modalities/`` and calls :func:`register` at import
time; the package discovers those files itself, so adding a modality touches no other file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from multiembed.errors import MultiembedError

if TYPE_CHECKING:
    from multiembed.encoder import Encoder
    from multiembed.models import ResolvedModel


@dataclass(frozen=True)
class ModelInfo:
    """A frozen description of one well-known model, so users can name it by a short alias."""

    alias: str
    hub_id: str
    dim: int
    description: str = ""
    # Python package that ships a copy of the weights (found before the hub is tried).
    packaged: str | None = None
    # Where the weights live: "hub" (Hugging Face), or a library's own store the encoder fetches
    # from (e.g. "torchvision"), in which case resolution leaves the path empty.
    source: str = "hub"
    # Per-model settings the encoder needs (pooling, query instruction, ...).
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ModalitySpec:
    """Everything the SDK and CLI need to know about a modality before loading any weights."""

    name: str
    description: str
    default_model: str
    models: tuple[ModelInfo, ...]
    #: file suffixes a folder is searched for (lower case, with the dot)
    extensions: frozenset[str]
    encoder_class: type[Encoder]
    #: what a file named on the command line holds: one item ("file") or one item per line ("lines")
    file_items: Literal["file", "lines"] = "file"
    #: what a local model folder must hold, and how to make one where the hub is reachable
    local_folder: str = ""
    #: for models that are not weights (hosted APIs): model name -> ResolvedModel, replacing the
    #: local/packaged/hub lookup
    resolve: Callable[[str], ResolvedModel] | None = None

    def model_info(self, name: str) -> ModelInfo | None:
        """Find a known model by alias or hub id (case-insensitive)."""
        key = name.lower()
        for info in self.models:
            if key in (info.alias.lower(), info.hub_id.lower()):
                return info
        return None


_REGISTRY: dict[str, ModalitySpec] = {}
#: modules under multiembed/modalities that failed to import, with the reason
_FAILED: dict[str, str] = {}
_discovered = False


def register(spec: ModalitySpec) -> ModalitySpec:
    """Add a modality; called by each file in ``multiembed/modalities`` when it is imported."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing.encoder_class is not spec.encoder_class:
        raise MultiembedError(f"modality {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _discover() -> None:
    """Import every module in multiembed.modalities once, so each registers itself.

    A module that fails to import is recorded by name (and reported when its modality is asked
    for) instead of stopping discovery half-way: the other modalities stay usable.
    """
    global _discovered
    if _discovered:
        return
    import multiembed.modalities as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"{package.__name__}.{module.name}")
        except Exception as error:
            _FAILED[module.name] = f"{type(error).__name__}: {error}"
    _discovered = True


def import_failures() -> dict[str, str]:
    """Modality modules that could not be imported, with why (shown by ``multiembed modalities``)."""
    _discover()
    return dict(_FAILED)


def get(name: str) -> ModalitySpec:
    """Look a modality up by name, with the list of valid names in the error."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        module = name.replace("-", "_")
        if module in _FAILED:
            raise MultiembedError(
                f"modality {name!r} is unavailable: multiembed/modalities/{module}.py failed to import "
                f"({_FAILED[module]})"
            ) from None
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise MultiembedError(f"unknown modality {name!r}; known modalities: {known}") from None


def list_modalities() -> list[ModalitySpec]:
    """All registered modalities, sorted by name."""
    _discover()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]
