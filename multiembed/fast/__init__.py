"""Fast CPU modes that are measured faster before they are offered: OpenVINO float32/bfloat16/int8.

``multiembed.load(..., backend="openvino", dtype="int8")`` exports the encoder's torch core once
(:mod:`.export`, cached by :mod:`.cache`), compiles it and runs it in place of ``forward``; pooling
and normalisation stay in the shared pipeline. Every fast mode is compared with exact torch float32
on a fixed sample (:mod:`.quality`); ``backend="auto"`` picks the fastest that passes (:mod:`.choose`).
An explicit request for a mode below the gate still runs, with a :class:`LowQualityWarning`.
``encoder.fast_report`` holds what was chosen, the gate's numbers and where the export lives.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import warnings
from typing import TYPE_CHECKING, Any

from multiembed.device import DevicePolicy
from multiembed.fast.quality import MIN_COSINE, LowQualityWarning, QualityReport

if TYPE_CHECKING:  # not at run time: multiembed.encoder imports this package (for FastHook)
    from multiembed.encoder import Encoder

__all__ = ["MIN_COSINE", "LowQualityWarning", "QualityReport", "accelerate", "attach"]

logger = logging.getLogger("multiembed.fast")


def attach(encoder: Encoder, mode: Any, policy: DevicePolicy, **report: Any) -> None:
    """Make ``encoder`` run ``mode`` (a prepared :class:`~multiembed.fast.export.FastMode`)."""
    encoder.fast = mode.runner
    encoder.policy = dataclasses.replace(policy, backend="openvino", precision=mode.precision)
    encoder.fast_report = {**mode.report(), **report}


def accelerate(encoder: Encoder, policy: DevicePolicy, model_path: str) -> None:
    """Apply a fast backend to a freshly loaded (torch float32) encoder, as ``policy`` asks."""
    from multiembed.fast.choose import choose
    from multiembed.fast.export import core_of, prepare
    from multiembed.fast.sample import Sample

    @functools.cache
    def sample_of() -> Sample:
        return Sample(encoder, core_of(encoder))

    if policy.backend == "auto":
        choose(encoder, policy, model_path, sample_of)
        return
    precision = policy.precision or "float32"
    mode = prepare(encoder, precision, model_path, sample_of)
    if not mode.quality.passed:
        message = (
            f"backend='openvino' dtype={precision!r} fails the quality gate for {encoder.model_id} on "
            f"this machine ({mode.quality.describe()}; the gate needs min cosine >= {MIN_COSINE}); "
            "its vectors are further from exact float32 than the modes backend='auto' offers"
        )
        logger.warning(message)
        warnings.warn(message, LowQualityWarning, stacklevel=3)
    attach(encoder, mode, policy, chosen_by="request")
