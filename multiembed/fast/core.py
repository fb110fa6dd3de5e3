"""The hook an encoder fills in to be run by a fast backend: its torch core, how to feed it and read it.

Only the core (the network) leaves torch; loading, preprocessing, pooling and normalisation stay in
the shared pipeline, so a fast encoder differs from the exact one only where the numbers are made.
A modality writes a few lines: the module, a function of its named input tensors, which tensors of
a preprocessed batch those are, and how the core's output becomes a :class:`ModelOutput`.
:class:`FastHook`, a base class of every encoder, is where it offers them and where
:func:`multiembed.fast.attach` plugs the compiled core in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from multiembed.encoder import ModelOutput

#: the named input tensors of a core, as read off a preprocessed batch
CoreInputs = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class ExportableCore:
    """What a fast backend needs from an encoder to convert, calibrate and run its network.

    ``run(module, inputs)`` is the traced computation (one output tensor); ``inputs(batch)`` picks the
    named tensors from a preprocessed batch; ``output(tensor, batch)`` builds what ``pool`` expects.
    ``documents``/``queries`` are loader inputs for calibration and the quality gate (the fixed
    sample in :mod:`multiembed.fast.corpus`). ``transformer`` selects NNCF's transformer scheme.
    """

    module: torch.nn.Module
    input_names: tuple[str, ...]
    run: Callable[[torch.nn.Module, CoreInputs], torch.Tensor]
    inputs: Callable[[Any], CoreInputs]
    output: Callable[[torch.Tensor, Any], ModelOutput]
    documents: Sequence[Any]
    queries: Sequence[Any]
    transformer: bool = True


class FastHook:
    """The fast-backend slot of :class:`~multiembed.encoder.Encoder` (one of its base classes).

    A modality overrides :meth:`exportable_core`; :func:`multiembed.fast.attach` sets ``fast``, which
    the shared pipeline then runs in place of ``forward``, and ``fast_report``. On torch both stay None.
    """

    #: set by :mod:`multiembed.fast` when a fast backend runs the core instead of ``forward``
    fast: Callable[[Any], ModelOutput] | None = None
    #: what the fast backend is and how it scored in the quality gate (None on plain torch)
    fast_report: dict[str, Any] | None = None

    def exportable_core(self) -> ExportableCore | None:
        """The torch core a fast backend (OpenVINO) may run in place of ``forward``; None: torch only.

        A modality offers one by naming the module, its input tensors (read off a preprocessed
        batch) and how its output becomes a :class:`ModelOutput`; pooling stays shared.
        """
        return None
