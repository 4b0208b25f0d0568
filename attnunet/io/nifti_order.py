"""Arrays into and out of NIfTI's on-disk voxel order (first axis fastest: numpy's Fortran order), quickly."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

# First-axis planes copied per slab: the strided reads and the writes both stay within cache.
SLAB = 16


def in_nifti_order(array: np.ndarray, dtype: DTypeLike = None) -> np.ndarray:
    """``array`` ``(X, Y, Z[, ...])`` as a Fortran-ordered array with the same values, cast to
    ``dtype`` on the way (default: its own; itself when it is such an array already).

    nibabel writes a Fortran-ordered array straight into the gzip stream; any other layout it
    transposes piece by piece on the way, several times slower for a full CT. The transpose is
    written by hand because the library ones (``np.asfortranarray``, torch's strided copy) are
    slower than a slab-by-slab copy (docs/explanation/inference-path.md#what-each-choice-buys-measured).
    It runs in numpy, single-threaded and
    outside the GIL, so several outputs can be laid out in parallel threads.
    """
    dtype = array.dtype if dtype is None else np.dtype(dtype)
    if array.flags.f_contiguous:
        return array.astype(dtype, order="F", copy=False)
    target = np.empty(array.shape[::-1], dtype=dtype)
    for start in range(0, array.shape[0], SLAB):
        target[..., start : start + SLAB] = array[start : start + SLAB].T
    return target.T


def in_c_order(array: np.ndarray, dtype: DTypeLike = None) -> np.ndarray:
    """``array`` as a C-ordered array with the same values, cast to ``dtype`` on the way (default:
    its own; itself when it is such an array already): the way back from NIfTI's voxel order, by
    the same slab-wise copy, faster than ``np.ascontiguousarray`` for the same reason. Casting in
    the same pass writes the result only once."""
    if array.flags.c_contiguous:
        return array.astype(array.dtype if dtype is None else dtype, copy=False)
    return in_nifti_order(array.T, dtype).T
