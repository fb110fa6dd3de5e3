"""The hook an encoder fills in to be run by a fast backend: its torch core, how to feed it and read it.

Only the core (the network) leaves torch; loading, preprocessing, pooling and normalisation stay in
the shared pipeline, so a fast encoder differs from the exact one only where the numbers are made.
A modality writes a few lines: the module, a function of its named input tensors, which tensors of
a preprocessed batch those are, and how the core's output becomes a :class:`ModelOutput`.
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
