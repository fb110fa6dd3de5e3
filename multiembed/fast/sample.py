"""The fixed sample as one encoder sees it: calibration batches, the example input, vectors, timings.

Everything here runs the encoder's own stages (load, preprocess, pool, normalise), so the gate and
the timings measure what users get, with only the core swapped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.fast.core import CoreInputs, ExportableCore

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

#: items per calibration batch (NNCF collects statistics batch by batch; fewer, larger ones are faster)
CALIBRATION_BATCH = 32

Runner = Callable[[Any], ModelOutput]


@contextlib.contextmanager
def running(encoder: Encoder, fast: Runner | None, policy: DevicePolicy | None = None) -> Iterator[None]:
    """The encoder with another core runner (None: torch) and policy, restored afterwards."""
    saved = encoder.fast, encoder.policy
    encoder.fast = fast
    encoder.policy = policy or saved[1]
    try:
        yield
    finally:
        encoder.fast, encoder.policy = saved


class Sample:
    """The fixed documents and queries, decoded once by ``encoder``, with what is measured on them."""

    def __init__(self, encoder: Encoder, core: ExportableCore) -> None:
        self.encoder = encoder
        self.core = core
        self.documents = [encoder.load(value, "document").raw for value in core.documents]
        self.queries = [encoder.load(value, "query").raw for value in core.queries]
        self._exact: tuple[np.ndarray, np.ndarray] | None = None

    def _batches(self, raws: list[Any], size: int) -> list[list[int]]:
        """Positions in batches of ``size``, largest items first (as the pipeline orders them)."""
        order = sorted(range(len(raws)), key=lambda index: -self.encoder.size_of(raws[index]))
        return [order[start : start + size] for start in range(0, len(order), size)]

    def example(self) -> CoreInputs:
        """A real two-item batch, the largest and the smallest item, so padding is traced too."""
        order = self._batches(self.documents, len(self.documents))[0]
        raws = [self.documents[order[0]], self.documents[order[-1]]]
        return self.core.inputs(self.encoder.preprocess(raws, "document"))

    def calibration(self) -> list[dict[str, np.ndarray]]:
        """The documents as batches of named numpy inputs, for int8 calibration (queries are held out)."""
        batches: list[dict[str, np.ndarray]] = []
        for positions in self._batches(self.documents, CALIBRATION_BATCH):
            batch = self.encoder.preprocess([self.documents[index] for index in positions], "document")
            batches.append(numpy_inputs(self.core.inputs(batch)))
        return batches

    def _embed(self, raws: list[Any], role: Role) -> np.ndarray:
        name = self.encoder.outputs[0].name
        rows: list[Any] = [None] * len(raws)
        for positions in self._batches(raws, self.encoder.batch_size):
            vectors = self.encoder._embed([raws[index] for index in positions], role)
            for index, vector in zip(positions, vectors, strict=True):
                rows[index] = vector[name]
        return np.stack(rows).astype(np.float32)

    def vectors(
        self, fast: Runner | None, policy: DevicePolicy | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Document and query vectors with the given core runner (None: torch under ``policy``)."""
        with running(self.encoder, fast, policy):
            return self._embed(self.documents, "document"), self._embed(self.queries, "query")

    def exact(self) -> tuple[np.ndarray, np.ndarray]:
        """The reference: torch float32 on the CPU, computed once."""
        if self._exact is None:
            self._exact = self.vectors(None, DevicePolicy(torch.device("cpu")))
        return self._exact

    def items_per_second(
        self, fast: Runner | None, policy: DevicePolicy | None = None, repeats: int = 2
    ) -> float:
        """Documents embedded per second (best of ``repeats`` after a warm-up batch)."""
        with running(self.encoder, fast, policy):
            self._embed(self.documents[: self.encoder.batch_size], "document")
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                self._embed(self.documents, "document")
                best = min(best, time.perf_counter() - start)
        return len(self.documents) / best


def numpy_inputs(inputs: CoreInputs) -> dict[str, np.ndarray]:
    """Named tensors as contiguous numpy arrays (channels-last images included), as OpenVINO takes them."""
    return {name: np.ascontiguousarray(tensor.detach().cpu().numpy()) for name, tensor in inputs.items()}
