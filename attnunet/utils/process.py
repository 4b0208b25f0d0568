"""Process-wide set-up that every command makes once, in one explicit call: :func:`prepare_process`.

Importing an attnunet module changes nothing in the process; a command's ``main`` calls
:func:`prepare_process` first, and a library user may call it too (or leave the process as it is).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import logging
import warnings
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

# (category, message regex): dependency warnings with nothing for the user to do. Filtered here rather
# than per call site: they come from inside MONAI and Lightning, not from calls attnunet makes.
KNOWN_HARMLESS_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # MONAI probes an optional GPU DICOM decoder at reader construction; pydicom's decoders are used.
    (UserWarning, r"NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register"),
    # MONAI's own surface metrics pass an argument it deprecated itself (monai.metrics.utils).
    (FutureWarning, r".*get_mask_edges:always_return_as_numpy"),
    # Lightning's pytree helper calls a torch API that torch deprecated; nothing changes for users.
    (Warning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)
# Loggers that announce the same optional decoder at WARNING level.
KNOWN_HARMLESS_LOGGERS = ("monai.data.nvimgcodec_pydicom_plugin",)

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3


def prepare_process(performance: Mapping[str, Any] | None = None) -> None:
    """Set up this process for a command (idempotent).

    Always: dependency notices known to be harmless are silenced (:data:`KNOWN_HARMLESS_WARNINGS`)
    and the garbage collection at exit is skipped (:func:`_skip_the_final_garbage_collection`).
    With ``performance`` (the ``performance`` config node of a command that runs a network):
    ``malloc_tuning`` (default true) keeps freed memory in glibc's heap (:func:`keep_freed_memory`);
    ``float32_matmul_precision`` (default ``high``) and ``cudnn_benchmark`` (default true) set
    torch's. Without it torch is not imported.
    """
    silence_known_dependency_noise()
    atexit.unregister(_skip_the_final_garbage_collection)  # registered once however often this runs
    atexit.register(_skip_the_final_garbage_collection)
    if performance is None:
        return
    import torch  # noqa: PLC0415 - importing this module, and commands without a network, stay free of torch

    if performance.get("malloc_tuning", True):
        keep_freed_memory()
    torch.set_float32_matmul_precision(performance.get("float32_matmul_precision", "high"))
    torch.backends.cudnn.benchmark = bool(performance.get("cudnn_benchmark", True))


def silence_known_dependency_noise() -> None:
    """Install the filters of :data:`KNOWN_HARMLESS_WARNINGS` and :data:`KNOWN_HARMLESS_LOGGERS`."""
    for category, message in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in KNOWN_HARMLESS_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds so freed buffers stay in the heap for reuse; return
    False where glibc is not available.

    3D conv nets allocate and free buffers of tens of MB every step; glibc serves those with
    ``mmap`` and returns them at ``free``, so each step pays page faults to zero fresh memory
    (docs/results.md#speed-against-monais-attentionunet). Neither torch nor Lightning exposes
    this, hence the ``ctypes`` call.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold_bytes)) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2 * threshold_bytes - 1)) == 1 and ok
    if not ok:
        log.debug("mallopt refused the thresholds")
    return ok


def _skip_the_final_garbage_collection() -> None:
    """At exit Python collects garbage once more over every object torch and MONAI created, to free
    memory the ending process gives back anyway. Freezing hides those objects from the collector;
    reference-counted clean-up (open files, logging's flush, ``weakref.finalize``) still runs. Done
    at exit only, so a process that goes on (a test run) keeps its collector."""
    gc.disable()
    gc.freeze()
