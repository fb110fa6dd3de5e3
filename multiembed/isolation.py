"""Per-item error isolation: a batch that fails is split in halves until the failing items are found.

One bad item (a file that decodes but breaks the model, a text the tokenizer rejects) should cost
only itself: the batch it is in is retried in halves, so every other item still gets its vectors
and the bad one gets its reason. Running out of memory splits too (a smaller batch may fit), and one
item too big for memory on its own fails alone. What no split can fix stops the run as a
:class:`BackendError`: a failed device, and a model that fails on every item
(:class:`~multiembed.failures.FailureWatch`, which also stops a run where every item runs out of memory).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from multiembed.errors import BackendError, InputError
from multiembed.failures import FailureWatch, is_device_failure
from multiembed.workers import failure_reason

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

T = TypeVar("T")


def embed_isolated(
    embed: Callable[[list[Any]], list[T]], raws: list[Any], device: torch.device, watch: FailureWatch
) -> list[T | str]:
    """``embed(raws)``, item by item: each item's result, or the reason it failed."""
    try:
        results: list[T | str] = list(embed(raws))
        watch.success()
        return results
    except (BackendError, KeyboardInterrupt):
        raise
    except torch.OutOfMemoryError:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if len(raws) == 1:
            reason = f"too big for the memory of {device} on its own (out of memory)"
            watch.failure(reason)
            return [reason]
    except Exception as error:
        if is_device_failure(error):
            raise BackendError(f"{device} failed: {error}") from None
        if len(raws) == 1:
            reason = failure_reason(error)
            if not isinstance(error, InputError):  # a bad item decoded late is no model fault
                watch.failure(reason)
            return [reason]
    half = len(raws) // 2
    return embed_isolated(embed, raws[:half], device, watch) + embed_isolated(
        embed, raws[half:], device, watch
    )
