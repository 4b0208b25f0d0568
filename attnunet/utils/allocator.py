"""glibc malloc tuning for CPU training.

3D conv nets allocate and free buffers of tens of MB every step. glibc serves these with ``mmap``
and returns them at ``free``, so each step pays page faults to zero fresh memory (about half of
a CPU training step: docs/results.md#speed-against-monais-attentionunet).
Raising the mmap and trim thresholds keeps freed memory in
the heap for reuse. Neither torch nor Lightning exposes this, hence the ``ctypes`` call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Raise glibc's mmap/trim thresholds; return False where glibc is not available."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold_bytes)) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2 * threshold_bytes - 1)) == 1 and ok
    if not ok:
        log.debug("mallopt refused the thresholds")
    return ok
