"""Telling one bad item from a model that cannot run, so the second stops the run.

Per-item isolation splits a failing batch until the failing items are found. That is right for a
bad item and wrong for a broken model (a shape bug, a lost GPU), which fails on every item: the
run would report n "bad items" and go on. These helpers decide when a failure is the model's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from multiembed.errors import BackendError

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

#: how many single items in a row may fail with the same reason before the run is stopped
SYSTEMIC_AFTER = 3


class SystemicFailure(BackendError):
    """Items fail one after another with the same reason: most likely the model, not the items.

    A batch job stops on it. A server, whose items come from many clients, first checks the model
    on an input it has embedded before: one client's inputs (a few huge files failing alike) must
    not take the model away from everyone.
    """


class FailureWatch:
    """Tells an item's own failure from a failure of the model itself.

    A model that cannot run (a shape bug, a lost GPU) fails on every item with the same reason;
    splitting batches down to single items would then report n "bad items" and go on. Once
    :data:`SYSTEMIC_AFTER` single items in a row (two before anything has worked) fail with the same
    reason, the run stops with that error instead.
    """

    def __init__(self, stop: bool = True) -> None:
        #: False: never raise (a caller that has checked the model itself; items just fail alone)
        self.stop = stop
        self.succeeded = False
        self.reason: str | None = None
        self.count = 0

    def success(self) -> None:
        self.succeeded, self.reason, self.count = True, None, 0

    def failure(self, reason: str) -> None:
        # The same fault names per-item sizes ("3x32 and 64x32"): compare with the numbers left out.
        shape = re.sub(r"\d+", "#", reason)
        self.count = self.count + 1 if shape == self.reason else 1
        self.reason = shape
        if self.stop and self.count >= (SYSTEMIC_AFTER if self.succeeded else 2):
            raise SystemicFailure(f"the model fails on every item, stopping the run: {reason}")


def is_device_failure(error: Exception) -> bool:
    """A CUDA/accelerator error poisons every later batch: it is never one item's fault."""
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(error, accelerator_error):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("CUDA error" in text or "device-side assert" in text)
