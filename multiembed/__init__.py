"""multiembed: embeddings for images, text, audio, video and image-text pairs, ready for Milvus.

>>> import multiembed
>>> encoder = multiembed.load("text")            # all-MiniLM-L6-v2, 384-d
>>> vectors = encoder.encode_documents(["a red bicycle"])
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any

from multiembed.errors import (
    BackendError,
    CollectionNotFoundError,
    ConfigError,
    InputError,
    ModelNotFoundError,
    MultiembedError,
    SchemaMismatchError,
)
from multiembed.lazy import lazy_attributes
from multiembed.registry import ModalitySpec, ModelInfo, get, list_modalities

if TYPE_CHECKING:
    import torch

    from multiembed.device import DevicePolicy
    from multiembed.embeddings import Embeddings, ItemError
    from multiembed.encoder import Encoder
    from multiembed.milvus import MilvusStore
    from multiembed.outputs import OutputSpec

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "CollectionNotFoundError",
    "ConfigError",
    "DevicePolicy",
    "Embeddings",
    "Encoder",
    "InputError",
    "ItemError",
    "MilvusStore",
    "ModalitySpec",
    "ModelInfo",
    "ModelNotFoundError",
    "MultiembedError",
    "OutputSpec",
    "SchemaMismatchError",
    "get",
    "list_modalities",
    "load",
    "options_of",
]


#: names imported on first use: torch, numpy and pymilvus take seconds to import, and the CLI's
#: --help, `modalities` and `collections` need none of them
_LAZY = {
    "DevicePolicy": "multiembed.device",
    "Embeddings": "multiembed.embeddings",
    "ItemError": "multiembed.embeddings",
    "Encoder": "multiembed.encoder",
    "MilvusStore": "multiembed.milvus",
    "OutputSpec": "multiembed.outputs",
}


__getattr__ = lazy_attributes("multiembed", _LAZY)


def load(
    modality: str,
    model: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    backend: str = "torch",
    **options: Any,
) -> Encoder:
    """An encoder for ``modality`` with ``model`` (alias, hub id or local path; None = default).

    ``backend="torch"`` is exact (float32 unless ``dtype`` says otherwise); ``"openvino"`` runs the
    model core in OpenVINO on the CPU (``dtype`` float32, bfloat16 or int8), exported once and
    cached; ``"auto"`` picks the fastest mode measured on this machine that passes the quality gate
    (see :mod:`multiembed.fast`). Device, dtype and backend are checked before any weights are read,
    so a bad request fails fast.
    """
    from multiembed.device import DevicePolicy
    from multiembed.models import resolve_model, weights_fingerprint

    if model is not None and not isinstance(model, str):
        if not isinstance(model, os.PathLike):
            raise ConfigError(f"model must be an alias, hub id or path, not {type(model).__name__}")
        model = os.fspath(model)
    spec = get(modality)
    _check_options(spec, options)
    policy = DevicePolicy.resolve("auto" if device is None else device, dtype, backend)
    resolved = resolve_model(spec, model)
    torch_policy = policy if policy.backend == "torch" else DevicePolicy(policy.device)
    encoder = spec.encoder_class.from_pretrained(resolved, torch_policy, **options)
    encoder.weights = weights_fingerprint(resolved.path)
    if policy.backend != "torch":
        from multiembed.fast import accelerate

        accelerate(encoder, policy, resolved.path)
    return encoder


def options_of(spec: ModalitySpec) -> list[str]:
    """The keyword options ``load()`` takes for a modality (besides model, device, dtype and backend)."""
    parameters = inspect.signature(spec.encoder_class.from_pretrained).parameters.values()
    return sorted(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _check_options(spec: ModalitySpec, options: dict[str, Any]) -> None:
    """An option the modality doesn't take is named with the valid ones, before any weights are read."""
    valid = options_of(spec)
    limit = options.get("max_bytes")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"max_bytes must be a whole number of bytes >= 1 (or None), got {limit!r}")
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"modality {spec.name!r} does not take {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(valid) or 'none'}"
        )
