"""``backend="auto"``: the fastest mode measured on this machine that passes the quality gate.

The candidates follow the CPU: torch float32 (the exact baseline) always; bfloat16 (torch autocast
and OpenVINO) only with AVX512-BF16 or AMX; OpenVINO float32 and int8 wherever the encoder has an
exportable core and OpenVINO is installed; ``dtype`` narrows them to one precision. Each is timed on
the fixed sample and gated once; the decision is kept (``auto-<key>.json`` beside the exports, keyed
by the encoder identity, the CPU, the thread count, the batch size and the library versions), so
later loads read it instead of measuring again.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from multiembed.cpu import cpu_features
from multiembed.device import DevicePolicy, resolve_dtype
from multiembed.encoder import Encoder
from multiembed.errors import BackendError
from multiembed.fast import cache
from multiembed.fast.export import FastMode, SampleOf, prepare
from multiembed.fast.quality import compare

logger = logging.getLogger("multiembed.fast")


def candidates(encoder: Encoder, precision: str | None) -> list[tuple[str, str]]:
    """(backend, dtype) pairs worth measuring here, fastest-looking last; torch float32 first."""
    bf16 = cpu_features().bf16
    found = [("torch", "float32")] + ([("torch", "bfloat16")] if bf16 else [])
    if encoder.exportable_core() is not None and importlib.util.find_spec("openvino") is not None:
        found.append(("openvino", "float32"))
        if bf16:
            found.append(("openvino", "bfloat16"))
        if importlib.util.find_spec("nncf") is not None:
            found.append(("openvino", "int8"))
    return [pair for pair in found if precision is None or pair[1] == precision]


def _decision_key(encoder: Encoder, pairs: list[tuple[str, str]]) -> str:
    import torch

    from multiembed.fast.openvino import versions

    features = cpu_features()
    fast = any(backend == "openvino" for backend, _ in pairs)
    return cache.key_of(
        cache.identity_of(encoder.config()),
        "auto",
        pairs,
        features.describe(),
        torch.get_num_threads(),
        encoder.batch_size,
        versions(int8=any(dtype == "int8" for _, dtype in pairs)) if fast else {"torch": torch.__version__},
    )


def _measure(
    encoder: Encoder, pairs: list[tuple[str, str]], model_path: str, sample_of: SampleOf
) -> tuple[dict[str, Any], dict[str, FastMode]]:
    """Time and gate every candidate on the fixed sample; pick the fastest that passes."""
    sample = sample_of()
    exact_docs, exact_queries = sample.exact()
    rows: list[dict[str, Any]] = []
    modes: dict[str, FastMode] = {}
    for backend, precision in pairs:
        if backend == "openvino":
            mode = prepare(encoder, precision, model_path, sample_of)
            modes[precision] = mode
            quality, speed = mode.quality, sample.items_per_second(mode.runner)
        else:
            policy = DevicePolicy(encoder.policy.device, resolve_dtype(precision))
            exact = precision == "float32"  # the reference itself
            fast_docs, fast_queries = (exact_docs, exact_queries) if exact else sample.vectors(None, policy)
            quality = compare(exact_docs, fast_docs, exact_queries, fast_queries)
            speed = sample.items_per_second(None, policy)
        rows.append(
            {"backend": backend, "dtype": precision, "items_per_s": round(speed, 2), **quality.to_dict()}
        )
    baseline = next((row["items_per_s"] for row in rows if row["backend"] == "torch"), None)
    for row in rows:
        row["speedup"] = round(row["items_per_s"] / baseline, 3) if baseline else None
    passing = [row for row in rows if row["passed"]]
    if not passing:
        raise BackendError(
            "backend='auto': no mode passes the quality gate here: "
            + "; ".join(f"{r['backend']} {r['dtype']} min cosine {r['min_cosine']:.4f}" for r in rows)
        )
    chosen = max(passing, key=lambda row: row["items_per_s"])
    decision = {"chosen": {"backend": chosen["backend"], "dtype": chosen["dtype"]}, "measured": rows}
    return decision, modes


def choose(encoder: Encoder, policy: DevicePolicy, model_path: str, sample_of: SampleOf) -> None:
    """Apply auto's choice to ``encoder`` (measured once per machine and identity, then read back)."""
    from multiembed.fast import attach

    pairs = candidates(encoder, policy.precision)
    if not pairs:
        raise BackendError(
            f"backend='auto' with dtype={policy.precision!r}: no {encoder.modality} mode offers it on this "
            f"CPU ({cpu_features().describe()})"
        )
    if all(backend == "torch" for backend, _ in pairs):  # nothing but torch to choose from: no measuring
        backend, precision = pairs[-1] if policy.precision else pairs[0]
        encoder.policy = DevicePolicy(policy.device, resolve_dtype(precision))
        encoder.fast_report = {"backend": backend, "dtype": precision, "chosen_by": "auto", "measured": []}
        logger.info("backend='auto': %s has no OpenVINO core here; torch %s", encoder.modality, precision)
        return
    places = cache.roots(model_path)
    name = f"auto-{_decision_key(encoder, pairs)}.json"
    found = cache.find_json(name, places)
    modes: dict[str, FastMode] = {}
    measured = found is None or "chosen" not in found[1]
    if found is not None and not measured:
        where: Path | None = found[0]
        decision = found[1]
    else:
        decision, modes = _measure(encoder, pairs, model_path, sample_of)
        where = cache.store_json(name, places, decision)
    backend, precision = decision["chosen"]["backend"], decision["chosen"]["dtype"]
    row = next(r for r in decision["measured"] if (r["backend"], r["dtype"]) == (backend, precision))
    report: dict[str, Any] = {
        "chosen_by": "auto",
        "measured": decision["measured"],
        "decision": str(where) if where else None,
    }
    if backend == "openvino":
        mode = modes.get(precision) or prepare(encoder, precision, model_path, sample_of)
        attach(encoder, mode, policy, **report)
    else:
        encoder.policy = DevicePolicy(policy.device, resolve_dtype(precision))
        quality = {key: row[key] for key in ("min_cosine", "mean_cosine", "top10_agreement", "passed")}
        encoder.fast_report = {"backend": "torch", "dtype": precision, "quality": quality, **report}
    logger.info(
        "backend='auto' picked %s %s for %s: %.2fx torch float32, min cosine %.5f (%s)",
        backend,
        precision,
        encoder.modality,
        row.get("speedup") or 1.0,
        row["min_cosine"],
        "measured now" if measured else f"as decided before: {where}",
    )
