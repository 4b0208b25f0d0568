"""A NIfTI file's voxels decompressed in a background thread before the loader asks for them.

``attnunet-infer`` on one CT spends a large part of its run importing torch and MONAI, all of it
in Python code that holds the interpreter lock, while decompressing the CT (zlib) runs outside it.
Started first, the read of the input overlaps those imports on the second core; the readers
(:class:`~attnunet.io.nifti_reader.NiftiReader`, :mod:`attnunet.inference.streamed_read`) then take
the decompressed file instead of reading it again. Only numpy and nibabel are needed here, so this
works before torch is imported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from attnunet.io.nifti_order import in_c_order

# (resolved path, size, modification time): a file changed since the read began is read again.
FileIdentity = tuple[str, int, int]

_pending: dict[FileIdentity, Future[Any]] = {}
_lock = threading.Lock()


def _identity(path: str | Path) -> FileIdentity | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


def c_ordered_voxels(image: Any) -> np.ndarray:
    """``(X, Y, Z[, ...])`` float32 voxels of a nibabel image as nibabel gives them (scaled by the
    header's slope and intercept), C-ordered: the array :class:`NiftiReader` hands to MONAI, whose
    loader would cast them to float32 next (a full pass over the CT of its own)."""
    return in_c_order(np.asanyarray(image.dataobj), np.float32)


def image_in_memory(path: str | Path) -> Any:
    """The nibabel image of ``path`` with a gzipped file decompressed in one zlib call, which leaves
    the interpreter lock free throughout: nibabel's streamed read takes it back for every 8 KiB
    block, thousands of times per CT, each time waiting for the importing thread to let go."""
    import gzip  # noqa: PLC0415 - imported in this thread, beside torch's import

    import nibabel as nib  # noqa: PLC0415

    image = nib.load(path)
    if not str(path).lower().endswith(".gz"):
        return image
    with open(path, "rb") as file:
        return type(image).from_bytes(gzip.decompress(file.read()))


def start_reading(path: str | Path) -> None:
    """Begin reading ``path`` into memory (its bytes decompressed, the storage type kept) in a daemon
    thread. The next :func:`take` or :func:`take_image` of the same, unchanged file gets it (waiting
    for the read to end); one file is pending at a time (a new call drops the previous one).
    The float32 copy is made when taken, by whichever reader takes it, so that a reader that works
    slab by slab (:mod:`attnunet.inference.streamed_read`) never holds the whole scan as float32."""
    identity = _identity(path)
    if identity is None:
        return  # the loader reports the missing file itself
    future: Future[Any] = Future()

    def read() -> None:
        try:
            future.set_result(image_in_memory(path))
        except BaseException as e:  # noqa: BLE001 - handed to take(), which reads again and reports
            future.set_exception(e)

    with _lock:
        _pending.clear()
        _pending[identity] = future
    threading.Thread(target=read, name="voxel-prefetch", daemon=True).start()


def take_image(path: str | Path) -> Any | None:
    """The in-memory nibabel image of a pending :func:`start_reading` of this same unchanged file
    (waiting for the read to end), or ``None`` (none pending, or that read failed: the caller reads
    the file itself and reports its error). A pending read of another file stays."""
    identity = _identity(path)
    with _lock:
        future = _pending.pop(identity, None) if identity is not None else None
    if future is not None and future.exception() is None:
        return future.result()
    return None


def take(path: str | Path, read: Callable[[], np.ndarray]) -> np.ndarray:
    """The voxels of ``path`` (:func:`c_ordered_voxels`) from a pending :func:`start_reading` of this
    same unchanged file, else ``read()``."""
    image = take_image(path)
    return read() if image is None else c_ordered_voxels(image)
