"""What this CPU can do fast: the instruction sets that decide which fast mode pays off.

Machines differ (AVX2-only EPYCs next to AVX512-BF16/VNNI ones), and a fast mode that wins on one
loses on the other: bfloat16 autocast is several times *slower* than float32 without AVX512-BF16 or
AMX, and int8 matmuls gain most with VNNI. So fast modes ask here instead of assuming.

The flags come from ``/proc/cpuinfo`` on Linux; elsewhere, from torch's own dispatch level (which
knows AVX2/AVX512 but not BF16/VNNI, so those count as absent). ``MULTIEMBED_CPU_FEATURES`` (a
comma-separated list) overrides detection, to reproduce another machine's choices.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

#: the flags that matter to embedding inference, as /proc/cpuinfo names them
KNOWN = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class CpuFeatures:
    """The instruction sets found, and what they mean for each fast mode."""

    flags: frozenset[str]
    model: str
    cores: int

    @property
    def bf16(self) -> bool:
        """Native bfloat16 matmuls (AVX512-BF16 or AMX): bf16 is faster than fp32 only with these."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    @property
    def vnni(self) -> bool:
        """int8 dot products in one instruction (AVX512-VNNI, AVX-VNNI or AMX): where int8 gains most."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    def describe(self) -> str:
        """One line for benchmark tables and error messages."""
        shown = [flag for flag in KNOWN if flag in self.flags]
        return f"{self.model} ({self.cores} cores): {' '.join(shown) or 'no AVX2'}"


def _cpuinfo() -> tuple[frozenset[str], str]:
    path = Path("/proc/cpuinfo")
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return frozenset(), model
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "model name" and value.strip():
            model = value.strip()
    return frozenset(flags), model


def _from_torch() -> frozenset[str]:
    try:
        import torch

        level = torch.backends.cpu.get_cpu_capability().upper()
    except Exception:
        return frozenset()
    if level.startswith("AVX512"):
        return frozenset({"avx2", "fma", "avx512f"})
    if level.startswith("AVX2"):
        return frozenset({"avx2", "fma"})
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This machine's features (computed once)."""
    flags, model = _cpuinfo()
    override = os.environ.get("MULTIEMBED_CPU_FEATURES")
    if override is not None:
        flags = frozenset(flag.strip().lower() for flag in override.split(",") if flag.strip())
    elif not flags:
        flags = _from_torch()
    return CpuFeatures(flags=flags & frozenset(KNOWN), model=model, cores=os.cpu_count() or 1)
