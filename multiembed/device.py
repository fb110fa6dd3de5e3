"""Device, dtype and backend policy, decided once per encoder so every modality runs the same way.

``auto`` prefers cuda, then mps, then cpu. float32 on the torch backend is exact and the default.
Fast modes are offered only where they are measured faster: on accelerators bfloat16/float16 cast
the weights (halving memory) under autocast; on a CPU torch's bfloat16 autocast is accepted only with
AVX512-BF16 or AMX (without them it is several times *slower* than float32, so it is refused with the
reason). The CPU's fast modes run the model core in OpenVINO (``backend="openvino"``: float32,
bfloat16 where the CPU has it, or int8 quantized by NNCF); ``backend="auto"`` picks the fastest one
that passes the quality gate on this machine (:mod:`multiembed.fast`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from multiembed.cpu import cpu_features
from multiembed.errors import BackendError

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

#: dtype names users may pass -> the torch dtype's attribute name
_DTYPES: dict[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
#: precisions only a fast backend runs (no torch dtype computes in them here)
_FAST_ONLY = {"int8": "int8"}
BACKENDS = ("torch", "openvino", "auto")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto"/"cpu"/"cuda:1"/"mps" into a torch.device that exists on this machine."""
    if isinstance(device, torch.device):
        device = str(device)
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError as error:
        raise BackendError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(
                f"device {device!r} requested but CUDA is not available "
                "(no GPU, or torch was built without CUDA); use --device cpu or auto"
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise BackendError(f"device {device!r} requested but only {count} CUDA device(s) exist")
    elif resolved.type == "mps" and not _mps_available():
        raise BackendError(f"device {device!r} requested but MPS is not available on this machine")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise BackendError(f"unsupported device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return resolved


def dtype_name(dtype: torch.dtype) -> str:
    """The name users pass for a dtype ("float32", "bfloat16", "float16"), as recorded in identities."""
    return str(dtype).removeprefix("torch.")


def precision_name(dtype: str | torch.dtype | None) -> str | None:
    """The canonical name of a requested precision (float32, bfloat16, float16, int8); None if unset."""
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype.strip().lower() in _FAST_ONLY:
        return _FAST_ONLY[dtype.strip().lower()]
    return dtype_name(resolve_dtype(dtype))


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """Turn a dtype name into a torch dtype; None means exact float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype_name(dtype) in _DTYPES.values():
            return dtype
        raise BackendError(f"unsupported dtype {dtype}: use float32, bfloat16, float16 or int8")
    name = dtype.strip().lower()
    if name in _FAST_ONLY:
        raise BackendError(
            f"dtype {dtype!r} has no torch compute type: it needs backend='openvino' (or 'auto')"
        )
    try:
        resolved: torch.dtype = getattr(torch, _DTYPES[name])
        return resolved
    except KeyError:
        raise BackendError(f"unsupported dtype {dtype!r}: use float32, bfloat16, float16 or int8") from None


def _backend_name(backend: str) -> str:
    name = backend.strip().lower() if isinstance(backend, str) else backend
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: use torch (exact), openvino or auto")
    return str(name)


def _slow_cpu_bfloat16(backend: str) -> BackendError:
    """One line: why bfloat16 is refused on this CPU, and what is fast here instead."""
    features = cpu_features()
    if backend == "torch":
        instead = "use backend='openvino' (dtype='int8', or float32) for a fast mode, or the default float32"
        why = "torch's bfloat16 autocast would run several times slower than float32"
    else:
        instead = "use dtype='int8' (or float32) with backend='openvino'"
        why = "OpenVINO would fall back to float32"
    return BackendError(
        f"dtype='bfloat16' refused on this CPU: it has no AVX512-BF16 or AMX ({features.describe()}), "
        f"so {why}; {instead}"
    )


def _cpu_only(device: str | torch.device, backend: str) -> torch.device:
    """OpenVINO runs on the CPU here: ``auto`` means the CPU, an accelerator is a clear error."""
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cpu")
    resolved = resolve_device(device)
    if resolved.type != "cpu":
        raise BackendError(
            f"backend={backend!r} runs on the CPU; device {str(resolved)!r} needs backend='torch'"
        )
    return resolved


@dataclass(frozen=True)
class DevicePolicy:
    """Where the model runs and in which precision; shared by every encoder."""

    device: torch.device
    #: what torch modules compute in (float32 whenever a fast backend runs the core)
    dtype: torch.dtype = field(default_factory=lambda: torch.float32)
    #: "torch", "openvino", or "auto" until :mod:`multiembed.fast` replaces it with its choice
    backend: str = "torch"
    #: the fast backend's precision ("float32", "bfloat16", "int8"); None: the torch dtype's (or, under
    #: auto, any that passes the quality gate)
    precision: str | None = None

    @classmethod
    def resolve(
        cls,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        backend: str = "torch",
    ) -> DevicePolicy:
        """Validate the user's device/dtype/backend request once, before any weights are loaded."""
        backend = _backend_name(backend)
        precision = precision_name(dtype)
        if backend == "auto":
            resolved = resolve_device(device)
            if resolved.type != "cpu":  # OpenVINO is a CPU backend here: accelerators stay on torch
                if precision == "int8":
                    raise BackendError(f"dtype='int8' is a CPU mode (OpenVINO); on {resolved} use float16")
                return cls(resolved, resolve_dtype(dtype))
            if precision == "float16":
                raise BackendError("dtype='float16' has no fast CPU mode; use int8, bfloat16 or float32")
            if precision == "bfloat16" and not cpu_features().bf16:
                raise _slow_cpu_bfloat16("auto")
            return cls(resolved, torch.float32, "auto", precision)
        if backend == "openvino":
            resolved = _cpu_only(device, backend)
            if precision == "float16":
                raise BackendError("backend='openvino' runs float32, bfloat16 or int8, not float16")
            if precision == "bfloat16" and not cpu_features().bf16:
                raise _slow_cpu_bfloat16(backend)
            return cls(resolved, torch.float32, backend, precision or "float32")
        resolved, torch_dtype = resolve_device(device), resolve_dtype(dtype)
        if resolved.type == "cpu" and torch_dtype == torch.bfloat16 and not cpu_features().bf16:
            raise _slow_cpu_bfloat16(backend)
        return cls(resolved, torch_dtype)

    @property
    def precision_name(self) -> str:
        """The precision recorded in identities: the fast backend's, else the torch dtype's name."""
        return self.precision or dtype_name(self.dtype)

    @property
    def reduced_precision(self) -> bool:
        return self.dtype != torch.float32

    @property
    def casts_weights(self) -> bool:
        """Half-precision weights only pay off on accelerators; CPU keeps fp32 weights + autocast."""
        return self.reduced_precision and self.device.type != "cpu"

    def place(self, module: torch.nn.Module, channels_last: bool = False) -> torch.nn.Module:
        """Move a model to the device (and dtype), in eval mode, ready for inference.

        ``channels_last`` suits convolutional nets: oneDNN and cuDNN run NHWC convolutions about
        twice as fast (measured 2.2x for ResNet-50 on CPU), with float32 results equal to ~1e-6.
        """
        module = module.to(self.device)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.casts_weights:
            module = module.to(self.dtype)
        return module.eval()

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """No autograd, and autocast in fast mode, around every forward pass."""
        with torch.inference_mode():
            if self.reduced_precision:
                with torch.autocast(device_type=self.device.type, dtype=self.dtype):
                    yield
            else:
                yield

    def move(self, batch: Any) -> Any:
        """Move every tensor in a (nested) batch to the device; leave everything else alone.

        On CUDA a host tensor is first copied into pinned (page-locked) memory and then sent with
        ``non_blocking=True``: from ordinary pageable memory the driver stages the copy through its
        own pinned buffer and the "non-blocking" copy blocks anyway. The pinned buffers come from
        torch's caching host allocator, which keeps each alive until its copy has finished.
        """
        if isinstance(batch, torch.Tensor):
            pin, non_blocking = copy_plan(self.device.type, batch.device.type)
            return (batch.pin_memory() if pin else batch).to(self.device, non_blocking=non_blocking)
        if isinstance(batch, dict):
            return {key: self.move(value) for key, value in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.move(value) for value in batch)
        return batch

    def __str__(self) -> str:
        if self.backend == "torch":
            return f"{self.device} {dtype_name(self.dtype)}"
        return f"{self.device} {self.backend} {self.precision or 'any'}"


def copy_plan(target: str, source: str) -> tuple[bool, bool]:
    """(pin first, copy non-blocking) for a tensor on device type ``source`` going to ``target``.

    Only host-to-CUDA copies gain from both; MPS and CPU targets copy synchronously as before.
    """
    to_cuda = target == "cuda"
    return to_cuda and source == "cpu", to_cuda
