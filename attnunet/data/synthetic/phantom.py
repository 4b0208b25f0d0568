"""One phantom case: anatomy on a fine grid, appearance, scanner -> HU volume, label and affine."""

from __future__ import annotations

import numpy as np

from attnunet.data.synthetic.anatomy import make_anatomy
from attnunet.data.synthetic.appearance import acquire, render, sample_appearance

GENERATOR_VERSION = 2
SLICE_THICKNESS_MM = (2.0, 2.5, 3.0, 4.0, 5.0)


def make_case(
    seed: int, index: int, lesions: bool = False, phase: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate one case in canonical RAS voxel order; depends only on ``(seed, index)``.

    Args:
        phase: force a contrast phase (``non_contrast``, ``arterial``, ``portal_venous``); random when None.

    Returns:
        image ``(X, Y, Z)`` int16 in HU, label ``(X, Y, Z)`` uint8 (0/1, 2 with lesions) and the
        4x4 voxel-to-world affine.
    """
    rng = np.random.default_rng([seed, index, GENERATOR_VERSION])
    in_plane = rng.uniform(1.5, 2.0)
    thickness = float(rng.choice(SLICE_THICKNESS_MM))
    slab = max(1, round(thickness / 1.4))  # fine slices rendered per acquired slice (partial volume)
    half = (rng.uniform(150, 180), rng.uniform(120, 140))
    z_range = (-rng.uniform(55, 85), rng.uniform(55, 80))
    shift = rng.uniform(-10, 10, size=3)
    n_z = int((z_range[1] - z_range[0]) / thickness)
    axes = (
        np.arange(-half[0], half[0], in_plane) + shift[0],
        np.arange(-half[1], half[1], in_plane) + shift[1],
        z_range[0] + shift[2] + (np.arange(n_z * slab) + 0.5) * thickness / slab,
    )
    anatomy = make_anatomy(axes, rng, lesions)
    look = sample_appearance(rng, phase)
    fine_spacing = (in_plane, in_plane, thickness / slab)
    hu = render(anatomy.tissue, fine_spacing, rng, look)
    image = acquire(hu, fine_spacing, slab, rng, look)
    label = _slab_label(anatomy.pancreas, slab)
    if lesions:
        label[_slab_label(anatomy.lesion, slab) == 1] = 2
    affine = np.diag([in_plane, in_plane, thickness, 1.0])
    # Voxel centre of acquired slice k is the centre of its slab of fine slices.
    affine[:3, 3] = [axes[0][0], axes[1][0], z_range[0] + shift[2] + thickness / 2]
    return image, label, affine


def _slab_label(mask: np.ndarray, k: int) -> np.ndarray:
    """A voxel of a thick slice is labelled when at least half of its fine slices are."""
    n = mask.shape[2] // k
    frac = mask[..., : n * k].reshape(*mask.shape[:2], n, k).mean(-1)
    return (frac >= 0.5).astype(np.uint8)
