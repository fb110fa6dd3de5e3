"""Pooling and normalisation shared by every encoder, so masks are handled one way everywhere.

Each pooler takes hidden states ``[batch, tokens, dim]`` and a mask ``[batch, tokens]`` (1 = real
token/frame) and returns ``[batch, dim]``. Padding must never leak into a vector: a plain mean over a
padded Whisper window, for example, is dominated by silence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from multiembed.errors import ConfigError

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

Pooler = Callable[["torch.Tensor", "torch.Tensor | None"], "torch.Tensor"]


def _mask_like(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.ones(hidden.shape[:-1], device=hidden.device, dtype=hidden.dtype)
    return mask.to(hidden.dtype)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the real positions only; accumulates in float32 under half precision."""
    work = hidden.float() if hidden.dtype in (torch.float16, torch.bfloat16) else hidden
    weights = _mask_like(work, mask).unsqueeze(-1)
    summed = (work * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The first real position (index 0 with right padding, first unmasked with left padding)."""
    if mask is None:
        return hidden[:, 0]
    first = mask.to(torch.int).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def max_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Element-wise max over real positions; padded positions can never win."""
    if mask is None:
        return hidden.max(dim=1).values
    masked = hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min)
    return masked.max(dim=1).values


def no_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """For models whose forward already returns one vector per item."""
    return hidden


POOLERS: dict[str, Pooler] = {"mean": mean_pool, "cls": cls_pool, "max": max_pool, "none": no_pool}


def get_pooler(name: str) -> Pooler:
    """Look a pooler up by name with a clear error listing the choices."""
    try:
        return POOLERS[name]
    except KeyError:
        raise ConfigError(f"unknown pooling {name!r}; choose one of {sorted(POOLERS)}") from None


def l2_normalize(vectors: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit length, so inner product equals cosine and Milvus COSINE/IP agree."""
    return torch.nn.functional.normalize(vectors, p=2, dim=-1, eps=eps)
