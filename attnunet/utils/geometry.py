"""Voxel geometry from affines."""

from __future__ import annotations

import numpy as np


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths in mm from a 4x4 affine (lengths of its first three columns)."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
