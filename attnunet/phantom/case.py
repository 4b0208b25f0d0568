"""One phantom case: anatomy on a fine grid, appearance, scanner -> HU volume, label and affine."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from attnunet.phantom.anatomy import make_anatomy
from attnunet.phantom.appearance import acquire, render, sample_appearance

GENERATOR_VERSION = 6  # v6: v5's images and labels, plus each case's tissue map (per-patch appearance)
V2_STREAM = 2  # random stream of everything generator v2 drew: a v3 case keeps its v2 case's pancreas
V3_STREAM = 3  # what v3 added (the longer field of view)
V4_STREAM = 4  # what v4 added (metal implants, steatosis, streak strength)
SLICE_THICKNESS_MM = (2.0, 2.5, 3.0, 4.0, 5.0)
CRANIAL_MM = (60.0, 140.0)  # scan end above the pancreas level (mm)
CAUDAL_MM = (60.0, 260.0)  # scan end below it
Axes = tuple[np.ndarray, np.ndarray, np.ndarray]


class PhantomCase(NamedTuple):
    """One generated case in canonical RAS voxel order, all arrays ``(X, Y, Z)`` on the acquired grid."""

    image: np.ndarray  # int16 HU
    label: np.ndarray  # uint8: 0 background, 1 pancreas (2 lesion when asked for)
    affine: np.ndarray  # 4x4 voxel-to-world (mm)
    tissue: np.ndarray  # uint8 :class:`~attnunet.phantom.canvas.Tissue` class per voxel


class ScanGrid(NamedTuple):
    """One scan's geometry (mm, RAS)."""

    axes: Axes  # world axes of the fine rendering grid
    in_plane: float  # pixel size
    thickness: float  # acquired slice thickness
    slab: int  # fine slices per acquired slice
    core_z: np.ndarray  # generator v2's fine z axis, as v2 computed it (inside ``axes[2]``)


def make_case(seed: int, index: int, lesions: bool = False, phase: str | None = None) -> PhantomCase:
    """Generate one case in canonical RAS voxel order; depends only on ``(seed, index)``.

    Args:
        phase: force a contrast phase (``non_contrast``, ``arterial``, ``portal_venous``); random when None.

    Returns:
        image, label, affine and the tissue map the image was rendered from (the middle fine
        slice of each acquired slice), from which training can render the case anew per patch.
    """
    rng, extra = case_streams(seed, index)
    added = np.random.default_rng([seed, index, V4_STREAM])
    axes, in_plane, thickness, slab, core_z = scan_grid(rng, extra)
    anatomy = make_anatomy(axes, rng, extra, core_z, lesions, added)
    look = sample_appearance(rng, phase, added)
    fine_spacing = (in_plane, in_plane, thickness / slab)
    hu = render(anatomy.tissue, fine_spacing, rng, look)
    image = acquire(hu, fine_spacing, slab, rng, look)
    label = _slab_label(anatomy.pancreas, slab)
    if lesions:
        label[_slab_label(anatomy.lesion, slab) == 1] = 2
    affine = np.diag([in_plane, in_plane, thickness, 1.0])
    # Voxel centre of acquired slice k is the centre of its slab of fine slices.
    affine[:3, 3] = [axes[0][0], axes[1][0], axes[2][0] + 0.5 * thickness * (1 - 1 / slab)]
    tissue = anatomy.tissue[..., slab // 2 :: slab][..., : label.shape[2]]
    return PhantomCase(image, label, affine, np.ascontiguousarray(tissue))


def case_streams(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The first two random streams of case ``index``: generator v2's draws, and what v3 adds (v4's
    additions have a third, so a v4 case is its v3 case plus metal and the wider HU ranges)."""
    return np.random.default_rng([seed, index, V2_STREAM]), np.random.default_rng([seed, index, V3_STREAM])


def scan_grid(rng: np.random.Generator, extra: np.random.Generator) -> ScanGrid:
    """Draw one scan's geometry: the fine rendering grid's world axes (mm, RAS), the in-plane pixel
    size, the acquired slice thickness, how many fine slices make one acquired slice (``slab``) and
    generator v2's fine z axis (its field of view; the same slices as part of the grid's).

    v2's grid (``rng``) is kept and extended by whole slices to a real scan's extent (``extra``): from
    the liver dome / lung bases / heart down to the upper abdomen only (pancreas protocol), the lower
    abdomen (most) or the pelvis; never less than v2's own extent.
    """
    in_plane = rng.uniform(1.5, 2.0)
    thickness = float(rng.choice(SLICE_THICKNESS_MM))
    slab = max(1, round(thickness / 1.4))  # fine slices rendered per acquired slice (partial volume)
    half = (rng.uniform(150, 180), rng.uniform(120, 140))
    v2_range = (-rng.uniform(55, 85), rng.uniform(55, 80))
    shift = rng.uniform(-10, 10, size=3)
    n_v2 = int((v2_range[1] - v2_range[0]) / thickness)
    below = max(0, round((v2_range[0] + extra.uniform(*CAUDAL_MM)) / thickness))
    above = max(0, round((extra.uniform(*CRANIAL_MM) - v2_range[0]) / thickness) - n_v2)
    fine = (np.arange((below + n_v2 + above) * slab) + 0.5 - below * slab) * thickness / slab
    axes = (
        np.arange(-half[0], half[0], in_plane) + shift[0],
        np.arange(-half[1], half[1], in_plane) + shift[1],
        v2_range[0] + shift[2] + fine,
    )
    core_z = v2_range[0] + shift[2] + (np.arange(n_v2 * slab) + 0.5) * thickness / slab
    return ScanGrid(axes, in_plane, thickness, slab, core_z)


def _slab_label(mask: np.ndarray, k: int) -> np.ndarray:
    """A voxel of a thick slice is labelled when at least half of its fine slices are."""
    n = mask.shape[2] // k
    count = mask[..., : n * k].reshape(*mask.shape[:2], n, k).sum(-1, dtype=np.uint8)
    return (2 * count >= k).astype(np.uint8)
