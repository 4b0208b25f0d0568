"""Pick fast defaults for the machine at hand (precision, memory format)."""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 dot products natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_cuda(accelerator: str) -> bool:
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def resolve_precision(requested: str | int, accelerator: str) -> str | int:
    """``auto`` -> ``bf16-mixed`` on bf16-capable GPUs and CPUs, ``16-mixed`` on older GPUs, else ``32-true``."""
    if requested != "auto":
        return requested
    if uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def resolve_channels_last(requested: bool | str, accelerator: str) -> bool:
    """``auto`` -> channels-last on CUDA (tensor-core convolutions), not on CPU where it measured slower."""
    if requested == "auto":
        return uses_cuda(accelerator)
    return bool(requested)
