"""MONAI's nibabel reader, handing over NIfTI voxels in C order (and prefetched ones)."""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.data import NibabelReader

from attnunet.io.voxel_prefetch import c_ordered_voxels, take


class NiftiReader(NibabelReader):
    """:class:`monai.data.NibabelReader` whose arrays are C-ordered float32 ``(X, Y, Z[, ...])`` (the
    dtype MONAI's loader casts to next; cast in the same pass).

    nibabel reads NIfTI voxels in the file's Fortran order; MONAI then makes them C-contiguous
    with ``np.ascontiguousarray``, a slow strided copy of a full CT; the slab-wise copy of
    :func:`~attnunet.io.nifti_order.in_c_order` gives the same array several times faster
    (docs/explanation/inference-path.md#what-each-choice-buys-measured).
    Voxels read ahead by :func:`~attnunet.io.voxel_prefetch.start_reading` are taken instead of
    reading the file again. Values, shape, affine and metadata are MONAI's own.
    """

    def _get_array_data(self, img: Any, filename: Any) -> np.ndarray:
        """``img``'s voxels (a nibabel image read from ``filename``), C-ordered."""
        return take(filename, lambda: c_ordered_voxels(img))
