"""Voxel geometry: spacing from affines, boxes around masks."""

from __future__ import annotations

import numpy as np


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths in mm from a 4x4 affine (lengths of its first three columns)."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """The smallest box holding every true voxel of ``mask``, grown by ``margin`` voxels on each side
    within the array (None when no voxel is true). Found from one projection per axis, which on a
    full-size CT is far cheaper than listing the true voxels."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)
