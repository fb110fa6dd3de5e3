"""Telling a broken model from one client's inputs that fail alike, before a server's worker dies.

In a batch run, items failing one after another with the same reason mean the model cannot run,
and the run stops (:class:`~multiembed.failures.SystemicFailure`). A server's items come from many
clients: a few huge uploads failing alike would stop the model for everyone. So the worker first
embeds again a small input that worked before; only if that fails too is the model at fault.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from multiembed.errors import MultiembedError

if TYPE_CHECKING:
    from multiembed.embeddings import Embeddings
    from multiembed.encoder import Role
    from multiembed.failures import SystemicFailure

#: the largest input kept to check the model with
KNOWN_GOOD_MAX_BYTES = 256 * 1024


def input_size(value: Any) -> int:
    """How big an input is to hold and to embed again: its length for text and bytes."""
    return len(value) if isinstance(value, (str, bytes, bytearray, memoryview)) else KNOWN_GOOD_MAX_BYTES + 1


def bare(error: SystemicFailure) -> SystemicFailure:
    """``error`` without its traceback and the exception it arose from: those hold the failed forward
    pass's frames, and on a GPU the memory it ran out of, while the model is checked."""
    error.__context__ = error.__cause__ = None
    return error.with_traceback(None)


class ModelCheck:
    """Per role, the smallest input embedded without error (at most :data:`KNOWN_GOOD_MAX_BYTES`).

    Smallest, so that the check is cheap and no client can make every later check expensive with
    one large upload; per role, so that a broken query tower is not cleared by a document.
    """

    def __init__(self) -> None:
        self._known_good: dict[Role, Any] = {}

    def remember(self, values: list[Any], role: Role) -> None:
        """``values`` were embedded without error in ``role``: keep the smallest if it is smaller."""
        value = min(values, key=input_size)
        known = self._known_good.get(role)
        if input_size(value) <= KNOWN_GOOD_MAX_BYTES and (
            known is None or input_size(value) < input_size(known)
        ):
            self._known_good[role] = value

    def model_works(self, encode: Callable[[list[Any]], Embeddings], role: Role) -> bool:
        """Whether ``encode`` still embeds the known-good input of ``role``; False when there is none
        (a role that never worked has nothing to be checked with: its failure stands)."""
        known = self._known_good.get(role)
        if known is None:
            return False
        try:
            return not encode([known]).errors
        except MultiembedError:
            return False
