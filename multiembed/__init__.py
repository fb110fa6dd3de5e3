"""multiembed: embeddings for images, text, audio, video and image-text pairs, ready for Milvus.

>>> import multiembed
>>> encoder = multiembed.load("text")            # all-MiniLM-L6-v2, 384-d
>>> vectors = encoder.encode_documents(["a red bicycle"])
"""

from __future__ import annotations

from typing import Any

import torch

from multiembed.device import DevicePolicy
from multiembed.embeddings import Embeddings, ItemError
from multiembed.encoder import Encoder
from multiembed.errors import (
    BackendError,
    InputError,
    ModelNotFoundError,
    MultiembedError,
    SchemaMismatchError,
)
from multiembed.models import resolve_model
from multiembed.registry import ModalitySpec, ModelInfo, get, list_modalities

__version__ = "0.1.0"

__all__ = [
    "BackendError",
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
    "SchemaMismatchError",
    "get",
    "list_modalities",
    "load",
]


def __getattr__(name: str) -> Any:
    """MilvusStore is imported on first use: pymilvus is slow to import and not every user needs it."""
    if name == "MilvusStore":
        from multiembed.milvus import MilvusStore

        return MilvusStore
    raise AttributeError(f"module 'multiembed' has no attribute {name!r}")


def load(
    modality: str,
    model: str | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    **options: Any,
) -> Encoder:
    """An encoder for ``modality`` with ``model`` (alias, hub id or local path; None = default).

    The device and dtype are checked before any weights are read, so a bad request fails fast.
    """
    spec = get(modality)
    policy = DevicePolicy.resolve(device, dtype)
    resolved = resolve_model(spec, model)
    return spec.encoder_class.from_pretrained(resolved, policy, **options)
