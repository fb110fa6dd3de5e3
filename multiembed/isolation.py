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

from multiembed.errors import BackendError, InputError, hidden_interrupt
from multiembed.failures import FailureWatch, is_device_failure
from multiembed.workers import failure_reason

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

T = TypeVar("T")


def embed_isolated(
    embed: Callable[[list[Any]], list[T]],
    raws: list[Any],
    device: torch.device,
    watch: FailureWatch,
    reject: Callable[[T], str | None] | None = None,
) -> list[T | str]:
    """``embed(raws)``, item by item: each item's result, or the reason it failed.

    ``reject`` refuses a result that came out (a NaN vector): a batch with some results kept shows
    the model works, and only the rejected items fail; a batch rejected whole is split like one
    that raised, so a model that rejects everything (an fp16 overflow) is stopped like a broken one.
    The watch is told of a failure only once the exception is left behind: the failed forward
    pass's tensors (on a GPU, the memory it ran out of) must not live on in the error it raises.
    """
    reason = ""
    try:
        results = list(embed(raws))
    except (BackendError, KeyboardInterrupt):
        raise
    except torch.OutOfMemoryError:
        reason = f"too big for the memory of {device} on its own (out of memory)"
        if device.type == "cuda":
            torch.cuda.empty_cache()
    except Exception as error:
        if (interrupt := hidden_interrupt(error)) is not None:
            raise interrupt from None
        if is_device_failure(error):
            raise BackendError(f"{device} failed: {error}") from None
        if isinstance(error, InputError) and len(raws) == 1:
            return [error.reason]  # a bad item decoded late is no model fault
        reason = failure_reason(error)
    else:
        verdicts = [reject(result) for result in results] if reject is not None else [None] * len(results)
        if not verdicts or not all(verdicts):
            watch.success()
            return [verdict or result for result, verdict in zip(results, verdicts, strict=True)]
        reason = str(verdicts[0])
    if len(raws) == 1:
        watch.failure(reason)
        return [reason]
    half = len(raws) // 2
    return embed_isolated(embed, raws[:half], device, watch, reject) + embed_isolated(
        embed, raws[half:], device, watch, reject
    )
