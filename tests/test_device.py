"""Device and dtype policy: auto selection, explicit requests, clear errors."""

from __future__ import annotations

import re

import pytest
import torch

from multiembed import BackendError, DevicePolicy
from multiembed.device import resolve_device, resolve_dtype


def test_auto_prefers_cuda_then_mps_then_cpu():
    expected = (
        "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    )
    assert resolve_device("auto").type == expected


def test_explicit_cpu():
    policy = DevicePolicy.resolve("cpu")
    assert policy.device == torch.device("cpu") and policy.dtype == torch.float32
    assert str(policy) == "cpu float32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_clear_error(name):
    with pytest.raises(BackendError, match="CUDA is not available"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["tpu", "gpu0", "cpu:x"])
def test_unknown_devices_are_refused(name):
    with pytest.raises(BackendError, match=re.escape(f"unknown device {name!r}: use auto, cpu, cuda")):
        resolve_device(name)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        (None, torch.float32),
        ("fp32", torch.float32),
        ("bf16", torch.bfloat16),
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        (torch.float16, torch.float16),
    ],
)
def test_dtype_names(name, dtype):
    assert resolve_dtype(name) == dtype


def test_unknown_dtype_is_refused():
    message = "unsupported dtype 'int4': use float32, bfloat16, float16 or int8"
    with pytest.raises(BackendError, match=message):
        resolve_dtype("int4")


def test_cpu_fast_mode_keeps_fp32_weights_and_autocasts():
    policy = DevicePolicy(torch.device("cpu"), torch.bfloat16)  # resolve() allows it only with AVX512-BF16
    layer = policy.place(torch.nn.Linear(4, 4))
    assert layer.weight.dtype == torch.float32 and not policy.casts_weights
    with policy.inference():
        out = layer(torch.ones(1, 4))
    assert out.dtype == torch.bfloat16 and not out.requires_grad


def test_accelerator_fast_mode_casts_weights():
    policy = DevicePolicy(torch.device("cuda"), torch.float16)
    assert policy.casts_weights  # decided from the policy alone, so CPU tests cover the logic


def test_move_handles_nested_batches():
    policy = DevicePolicy.resolve("cpu")
    batch = {"ids": torch.ones(2), "nested": [torch.zeros(1)], "modality": "text", "n": 3}
    moved = policy.move(batch)
    assert moved["modality"] == "text" and moved["n"] == 3
    assert moved["nested"][0].device.type == "cpu"


@pytest.mark.parametrize(
    ("target", "source", "plan"),
    [
        ("cuda", "cpu", (True, True)),
        ("cuda", "cuda", (False, True)),
        ("cpu", "cpu", (False, False)),
        ("mps", "cpu", (False, False)),
    ],
)
def test_host_to_cuda_copies_are_pinned_and_non_blocking(target, source, plan):
    from multiembed.device import copy_plan

    assert copy_plan(target, source) == plan


def test_moving_to_the_cpu_keeps_tensors_as_they_are():
    policy = DevicePolicy(torch.device("cpu"))
    batch = {"pixels": torch.ones(2, 3), "names": ["a", "b"], "pair": (torch.zeros(1), 5)}
    moved = policy.move(batch)
    assert moved["pixels"] is batch["pixels"] and moved["names"] == ["a", "b"]
    assert moved["pair"][0] is batch["pair"][0] and moved["pair"][1] == 5
    assert not moved["pixels"].is_pinned()
