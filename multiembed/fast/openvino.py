"""OpenVINO: convert an encoder's torch core, quantize it to int8 with NNCF, compile it, run it.

The precision is always set explicitly: OpenVINO's CPU default is bfloat16 wherever the CPU has it,
which would make "float32" silently inexact. ``float32`` compiles with the f32 hint, ``bfloat16``
with the bf16 hint. An int8 model runs its quantized matmuls in int8 and the operations left in
floating point (the activation-fed matmuls, softmax, normalisation) in bfloat16 where the CPU has
native bfloat16 (AVX512-BF16 or AMX), else in float32: on MiniLM that measured 0.93x the speed of
all-int8 at the same gate numbers, where float32 for those matmuls gave up half the gain.
Threads follow ``torch.get_num_threads()``, so a process that limits torch limits OpenVINO too.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from multiembed.cpu import cpu_features
from multiembed.errors import BackendError
from multiembed.extras import require
from multiembed.fast.core import CoreInputs, ExportableCore
from multiembed.fast.sample import numpy_inputs

if TYPE_CHECKING:
    import torch

    from multiembed.encoder import ModelOutput
else:
    from multiembed.lazy import torch

#: file names of a saved model inside a cache entry
MODEL_FILE = "model.xml"
_HINTS = {"float32": "f32", "bfloat16": "bf16"}
#: operations whose output feeds a matmul with outliers per-tensor int8 cannot represent
_ACTIVATIONS = {"Gelu", "Swish", "HSwish", "Mish"}


def versions(int8: bool) -> dict[str, str]:
    """The library versions an export depends on (part of its cache key)."""
    import torch as torch_module  # the lazy proxy does not forward dunder attributes

    openvino = require("openvino", "fast")
    found = {"openvino": str(openvino.__version__), "torch": str(torch_module.__version__)}
    if int8:
        found["nncf"] = str(require("nncf", "fast").__version__)
    return found


@contextlib.contextmanager
def _no_telemetry() -> Iterator[None]:
    """No usage telemetry while we convert and quantize: multiembed makes no network calls of its own.

    OpenVINO's converter and NNCF send usage events unless the user opted out; their own no-op stubs
    stand in for the duration of the call (and cost nothing, where a blocked network cost ~1.7 s).
    """
    patches: list[tuple[Any, str, Any]] = []
    with contextlib.suppress(ImportError):
        stub = importlib.import_module("openvino.tools.ovc.telemetry_stub")
        for where in ("openvino.tools.ovc.convert_impl", "openvino.tools.ovc.telemetry_utils"):
            patches.append((importlib.import_module(where), "tm", stub))
    with contextlib.suppress(ImportError, AttributeError):
        decorator = importlib.import_module("nncf.telemetry.decorator")
        nncf_stub = importlib.import_module("nncf.telemetry.wrapper").NNCFTelemetryStub
        patches.append((decorator, "telemetry", nncf_stub()))
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches if hasattr(module, name)]
    for module, name, value in patches:
        if hasattr(module, name):
            setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _traced(core: ExportableCore) -> torch.nn.Module:
    """The core as one module taking its inputs positionally, in ``input_names`` order."""

    class Traced(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = core.module

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return core.run(self.inner, dict(zip(core.input_names, tensors, strict=True)))

    return Traced().eval()


def convert(core: ExportableCore, example: CoreInputs) -> Any:
    """An OpenVINO model of the core, dynamic in every dimension, inputs named as the core names them."""
    openvino = require("openvino", "fast")
    with warnings.catch_warnings(), torch.no_grad(), _no_telemetry():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about code we do not own
        try:
            model = openvino.convert_model(
                _traced(core), example_input=tuple(example[name] for name in core.input_names)
            )
        except Exception as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            raise BackendError(f"OpenVINO could not convert the model: {reason}") from None
    for port, name in zip(model.inputs, core.input_names, strict=True):
        port.get_tensor().set_names({name})
    return model


def weighted_matmuls(model: Any) -> list[str]:
    """Names of the MatMuls with a constant (weights) operand, in execution order."""
    names: list[str] = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        source = op.input_value(1).get_node()
        while source.get_type_name() in ("Convert", "Transpose", "Reshape"):
            source = source.input_value(0).get_node()
        if source.get_type_name() == "Constant":
            names.append(op.get_friendly_name())
    return names


def activation_fed_matmuls(model: Any) -> list[str]:
    """Weighted matmuls that read an activation function's output (a transformer's FFN down-projection).

    Their inputs have the widest, most outlier-heavy range in the network, so one int8 scale per
    tensor loses the small values: on MiniLM these six matmuls were where int8 fell below min cosine
    0.99 (0.989 with them in int8, 0.998 with them in floating point). A sigmoid-gated product
    (``x * sigmoid(1.702 x)``, CLIP's quick GELU) counts as an activation too.
    """
    weighted = set(weighted_matmuls(model))
    found: list[str] = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or op.get_friendly_name() not in weighted:
            continue
        source = op.input_value(0).get_node()
        while source.get_type_name() in ("Convert", "Reshape", "FakeQuantize"):
            source = source.input_value(0).get_node()
        kind = source.get_type_name()
        gated = kind == "Multiply" and any(
            value.get_node().get_type_name() == "Sigmoid" for value in source.input_values()
        )
        if kind in _ACTIVATIONS or gated:
            found.append(op.get_friendly_name())
    return found


def quantize(
    model: Any,
    calibration: list[dict[str, np.ndarray]],
    transformer: bool,
    keep_float: list[str] | None = None,
) -> Any:
    """The int8 model: NNCF post-training quantization on the fixed sample (SmoothQuant for transformers).

    ``keep_float`` names operations left in floating point (NNCF's ignored scope).
    """
    nncf = require("nncf", "fast")
    options: dict[str, Any] = {"subset_size": len(calibration)}
    if transformer:
        options["model_type"] = nncf.ModelType.TRANSFORMER
    if keep_float:
        options["ignored_scope"] = nncf.IgnoredScope(names=keep_float)
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)
    try:  # NNCF draws progress bars on stdout, which may be a pipe of vectors
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _no_telemetry():
            warnings.simplefilter("ignore")
            return nncf.quantize(model, nncf.Dataset(calibration), **options)
    finally:
        nncf_logger.setLevel(level)


def save(model: Any, directory: Path) -> None:
    require("openvino", "fast").save_model(model, str(directory / MODEL_FILE), compress_to_fp16=False)


def read(directory: Path) -> Any:
    return require("openvino", "fast").Core().read_model(str(directory / MODEL_FILE))


def hint_for(precision: str) -> str:
    """OpenVINO's inference precision for a fast mode on this CPU (see the module docstring for int8)."""
    if precision == "int8":
        return "bf16" if cpu_features().bf16 else "f32"
    return _HINTS[precision]


def compile_for(model: Any, precision: str) -> Any:
    """The model compiled for this CPU with the precision hint set explicitly (never the default)."""
    openvino = require("openvino", "fast")
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": hint_for(precision),
        "INFERENCE_NUM_THREADS": max(1, torch.get_num_threads()),
    }
    return openvino.Core().compile_model(model, "CPU", config)


class OpenVINORunner:
    """Runs a compiled core on a preprocessed batch and hands back what ``pool`` expects."""

    def __init__(self, compiled: Any, core: ExportableCore, precision: str) -> None:
        self.compiled = compiled
        self.core = core
        self.precision = precision

    def __call__(self, batch: Any) -> ModelOutput:
        result = self.compiled(numpy_inputs(self.core.inputs(batch)))[0]
        return self.core.output(torch.from_numpy(np.asarray(result, dtype=np.float32)), batch)

    def __repr__(self) -> str:
        return f"OpenVINORunner(precision={self.precision!r})"
