"""Every ``auto`` setting resolved in one place: device, precision and memory format, for training
(``job="train"``) and inference (``job="infer"``). Callers pass the concrete values on."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

import torch

Job = Literal["train", "infer"]


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


def training_device_type(accelerator: str) -> str:
    """``cuda`` or ``cpu``: where Lightning's ``accelerator`` setting puts training on this machine."""
    return "cuda" if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda") else "cpu"


def resolve_device(requested: str) -> torch.device:
    """Inference device. ``auto`` -> CUDA when present (under torchrun, the GPU of this process's
    ``LOCAL_RANK``), else CPU; anything else as given (``cpu``, ``cuda``, ``cuda:1``)."""
    if requested != "auto":
        try:
            return torch.device(requested)
        except RuntimeError:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {requested!r}") from None
    if not torch.cuda.is_available():
        return torch.device("cpu")
    rank = os.environ.get("LOCAL_RANK")
    return torch.device(f"cuda:{int(rank) % torch.cuda.device_count()}" if rank is not None else "cuda")


def resolve_precision(requested: str | int, device_type: str, job: Job = "train") -> str | int:
    """``auto`` -> bf16 where the device has it natively; otherwise fp16 mixed precision for
    training on older GPUs, fp32 everywhere else. Training gets Lightning's spelling
    (``bf16-mixed``, ``16-mixed``, ``32-true``), inference the predictor's (``bf16``, ``fp32``)."""
    if requested != "auto":
        return requested
    if has_fast_bf16(device_type):
        return "bf16-mixed" if job == "train" else "bf16"
    if job == "infer":
        return "fp32"
    return "16-mixed" if device_type == "cuda" else "32-true"


def resolve_channels_last(requested: bool | str, device_type: str, job: Job = "train") -> bool:
    """Channels-last memory format. ``auto`` -> for training contiguous on CPU and CUDA (channels-last
    measured slower for this network's training on both, because of the instance-norm kernels); for
    inference channels-last on CPU only (faster there for bf16 and fp32, slower on an H200):
    docs/results.md#speed-against-monais-attentionunet."""
    if requested == "auto":
        return job == "infer" and device_type == "cpu"
    return bool(requested)
