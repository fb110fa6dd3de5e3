"""One OpenVINO fast mode for one encoder: found in the cache or exported once, compiled, and gated.

The float model (converted from the torch core) serves float32 and bfloat16; int8 is that model
quantized by NNCF on the fixed sample, and exporting it keeps the float model too. In a transformer
the matmuls that read an activation's output (the FFN down-projections) stay in floating point, as
per-tensor int8 loses their small values; if that still fails the quality gate, it is quantized again
with the first block (its first six weighted matmuls) in float too, and the better of the two is kept.
The gate is computed once per precision and CPU and kept beside the export (``gate-<precision>.json``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multiembed.cpu import cpu_features
from multiembed.encoder import Encoder
from multiembed.errors import BackendError
from multiembed.fast import cache, openvino
from multiembed.fast.core import ExportableCore
from multiembed.fast.quality import QualityReport, compare
from multiembed.fast.sample import Sample

logger = logging.getLogger("multiembed.fast")

SampleOf = Callable[[], Sample]
#: weighted matmuls kept in float when plain int8 fails the gate (a BERT block: q, k, v, out, 2 FFN)
FIRST_BLOCK = 6
#: how int8 models are made; part of their cache key, so a changed recipe never reuses an old export
INT8_RECIPE = "int8, activation-fed matmuls in float"


@dataclass
class FastMode:
    """A compiled fast core, its gate numbers and where its export lives."""

    precision: str
    runner: openvino.OpenVINORunner
    quality: QualityReport
    entry: Path
    reused: bool
    manifest: dict[str, Any]

    def report(self) -> dict[str, Any]:
        return {
            "backend": "openvino",
            "dtype": self.precision,
            "quality": self.quality.to_dict(),
            "passed": self.quality.passed,
            "cache": str(self.entry),
            "reused": self.reused,
            "export_seconds": self.manifest.get("seconds"),
            "kept_float": self.manifest.get("kept_float", []),
        }


def core_of(encoder: Encoder) -> ExportableCore:
    """The encoder's exportable core, or a clear error for modalities that have none."""
    core = encoder.exportable_core()
    if core is None:
        raise BackendError(
            f"{encoder.modality} encoder {encoder.model_id!r} offers no core OpenVINO can run "
            "(not supported for this modality or model layout); use backend='torch'"
        )
    return core


def _key(encoder: Encoder, core: ExportableCore, int8: bool) -> tuple[str, dict[str, Any]]:
    described = {
        "identity": cache.identity_of(encoder.config()),
        "model": INT8_RECIPE if int8 else "float",
        "inputs": list(core.input_names),
        "versions": openvino.versions(int8),
    }
    return cache.key_of(described), described


def _gate_record(quality: QualityReport) -> dict[str, Any]:
    return {"cpu": cpu_features().describe(), "quality": quality.to_dict()}


def _save(
    model: Any, manifest: dict[str, Any], gates: dict[str, QualityReport] | None = None
) -> Callable[[Path], None]:
    def write(directory: Path) -> None:
        openvino.save(model, directory)
        for precision, quality in (gates or {}).items():
            cache.write_json(directory / f"gate-{precision}.json", _gate_record(quality))
        if not cache.write_json(directory / cache.MANIFEST, {**manifest, "created": time.time()}):
            raise BackendError(f"cannot write {directory / cache.MANIFEST}")

    return write


def _measure(runner: openvino.OpenVINORunner, sample: Sample) -> QualityReport:
    """The gate's numbers for a runner against exact torch float32 on the fixed sample."""
    exact_docs, exact_queries = sample.exact()
    fast_docs, fast_queries = sample.vectors(runner)
    return compare(exact_docs, fast_docs, exact_queries, fast_queries)


def _quality(model: Any, core: ExportableCore, precision: str, sample: Sample) -> QualityReport:
    return _measure(openvino.OpenVINORunner(openvino.compile_for(model, precision), core, precision), sample)


def _int8(model: Any, core: ExportableCore, sample: Sample) -> tuple[Any, QualityReport, list[str]]:
    """int8 (activation-fed matmuls of a transformer in float); if that fails the gate, the first block too.

    Measured on MiniLM (min cosine to float32 on the fixed sample / on 300 random-word texts):
    everything in int8 0.989 / 0.987, the FFN down-projections in float 0.998 / 0.994 at 0.93x the
    speed of all-int8 (they run in bfloat16 where the CPU has it); the first block in float as well
    is the fallback, as it costs about a quarter of the speed.
    """
    calibration = sample.calibration()
    keep = openvino.activation_fed_matmuls(model) if core.transformer else []
    quantized = openvino.quantize(model, calibration, core.transformer, keep_float=keep)
    quality = _quality(quantized, core, "int8", sample)
    if quality.passed or not core.transformer:
        return quantized, quality, keep
    first_block = [name for name in openvino.weighted_matmuls(model)[:FIRST_BLOCK] if name not in keep]
    logger.info("int8 fails the gate (%s); again with the first block in float", quality.describe())
    retried = openvino.quantize(model, calibration, core.transformer, keep_float=keep + first_block)
    retried_quality = _quality(retried, core, "int8", sample)
    if retried_quality.min_cosine > quality.min_cosine:
        return retried, retried_quality, keep + first_block
    return quantized, quality, keep


def _export(encoder: Encoder, core: ExportableCore, int8: bool, places: list[Path], sample: Sample) -> Path:
    """Convert (and quantize), then store; returns the entry of the requested model."""
    started = time.perf_counter()
    model = openvino.convert(core, sample.example())
    float_key, float_described = _key(encoder, core, int8=False)
    if not int8 or cache.find(float_key, places) is None:
        seconds = round(time.perf_counter() - started, 2)
        float_entry = cache.store(float_key, places, _save(model, {**float_described, "seconds": seconds}))
        logger.info("exported %s to OpenVINO in %.1f s: %s", encoder.model_id, seconds, float_entry)
        if not int8:
            return float_entry
    started = time.perf_counter()
    quantized, quality, keep = _int8(model, core, sample)
    key, described = _key(encoder, core, int8=True)
    seconds = round(time.perf_counter() - started, 2)
    manifest = {**described, "seconds": seconds, "kept_float": keep}
    entry = cache.store(key, places, _save(quantized, manifest, {"int8": quality}))
    logger.info(
        "quantized %s to int8 in %.1f s (%s): %s", encoder.model_id, seconds, quality.describe(), entry
    )
    return entry


def _gate(entry: Path, runner: openvino.OpenVINORunner, sample_of: SampleOf) -> QualityReport:
    """The cached gate numbers for this precision on this CPU, or new ones (then cached)."""
    path = entry / f"gate-{runner.precision}.json"
    saved = cache.read_json(path)
    if saved is not None and saved.get("cpu") == cpu_features().describe():
        try:
            return QualityReport.from_dict(saved["quality"])
        except (KeyError, TypeError):
            pass
    quality = _measure(runner, sample_of())
    if not cache.write_json(path, _gate_record(quality)):
        logger.debug("gate numbers not cached: %s is not writable", entry)
    return quality


def prepare(encoder: Encoder, precision: str, model_path: str, sample_of: SampleOf) -> FastMode:
    """The fast mode ``precision`` for ``encoder``: from the cache when exported before, else made now."""
    core = core_of(encoder)
    int8 = precision == "int8"
    key, _ = _key(encoder, core, int8)
    places = cache.roots(model_path)
    entry = cache.find(key, places)
    reused = entry is not None
    if entry is None:
        entry = _export(encoder, core, int8, places, sample_of())
    manifest = cache.read_json(entry / cache.MANIFEST) or {}
    runner = openvino.OpenVINORunner(openvino.compile_for(openvino.read(entry), precision), core, precision)
    return FastMode(precision, runner, _gate(entry, runner, sample_of), entry, reused, manifest)
