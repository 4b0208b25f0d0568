"""Pick fast defaults for the machine at hand (precision, memory format)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 dot products natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def has_fast_bf16(device_type: str) -> bool:
    """bf16 autocast pays off on this device: a bf16-capable GPU, or a CPU with native bf16."""
    return torch.cuda.is_bf16_supported() if device_type == "cuda" else cpu_has_native_bf16()


def uses_cuda(accelerator: str) -> bool:
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def resolve_precision(requested: str | int, accelerator: str) -> str | int:
    """``auto`` -> ``bf16-mixed`` on bf16-capable GPUs and CPUs, ``16-mixed`` on older GPUs, else ``32-true``."""
    if requested != "auto":
        return requested
    device_type = "cuda" if uses_cuda(accelerator) else "cpu"
    if has_fast_bf16(device_type):
        return "bf16-mixed"
    return "16-mixed" if device_type == "cuda" else "32-true"


def resolve_channels_last(requested: bool | str) -> bool:
    """Training memory format. ``auto`` -> contiguous on CPU and CUDA: channels-last measured slower
    for this network's training on both, because of the instance-norm (GroupNorm) kernels
    (figures in docs/benchmarks.md)."""
    if requested == "auto":
        return False
    return bool(requested)
