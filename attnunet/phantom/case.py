"""One phantom case: anatomy on a fine grid, appearance, scanner -> HU volume, label and affine."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from attnunet.phantom.anatomy import make_anatomy
from attnunet.phantom.appearance import acquire, render, sample_appearance

GENERATOR_VERSION = 6  # cache key of a generated data set: any change to what a case holds needs a new one
# A case draws from one random stream per concern, seeded with ``(seed, index, stream)``, so that
# adding draws to one concern moves no draw of another: more field of view or more findings leave
# the core stream's draws (the pancreas's neighbourhood, the phase, the scanner) as they are, and
# cases stay comparable.
CORE_STREAM = 2  # the scan grid, the pancreas's neighbourhood in the core field of view, appearance, scanner
OUTER_STREAM = 3  # the field of view's extent beyond the core, what lies there, the elastic warp's field
FINDINGS_STREAM = 4  # incidental findings: metal implants (and their streaks' strength), fatty liver
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
    core_z: np.ndarray  # the core field of view's fine z axis, as :func:`scan_grid` draws it (inside ``axes[2]``)


def make_case(seed: int, index: int, lesions: bool = False, phase: str | None = None) -> PhantomCase:
    """Generate one case in canonical RAS voxel order; depends only on ``(seed, index)``.

    Args:
        phase: force a contrast phase (``non_contrast``, ``arterial``, ``portal_venous``); random when None.

    Returns:
        image, label, affine and the tissue map the image was rendered from (the middle fine
        slice of each acquired slice), from which training can render the case anew per patch.
    """
    rng, outer = case_streams(seed, index)
    findings = np.random.default_rng([seed, index, FINDINGS_STREAM])
    axes, in_plane, thickness, slab, core_z = scan_grid(rng, outer)
    anatomy = make_anatomy(axes, rng, outer, core_z, lesions, findings)
    look = sample_appearance(rng, phase, findings)
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
    """The core and outer random streams of case ``index`` (:data:`CORE_STREAM`, :data:`OUTER_STREAM`),
    the two that lay out its scan grid; its findings draw from a third (:data:`FINDINGS_STREAM`)."""
    return np.random.default_rng([seed, index, CORE_STREAM]), np.random.default_rng([seed, index, OUTER_STREAM])


def scan_grid(rng: np.random.Generator, outer: np.random.Generator) -> ScanGrid:
    """Draw one scan's geometry: the fine rendering grid's world axes (mm, RAS), the in-plane pixel
    size, the acquired slice thickness, how many fine slices make one acquired slice (``slab``) and
    the core field of view's fine z axis (around the pancreas; the same slices as part of the grid's).

    The core grid (from ``rng``, the core stream) is extended by whole slices to a real scan's extent
    (from ``outer``): from the liver dome / lung bases / heart down to the upper abdomen only
    (pancreas protocol), the lower abdomen (most) or the pelvis; never less than the core's own extent.
    """
    in_plane = rng.uniform(1.5, 2.0)
    thickness = float(rng.choice(SLICE_THICKNESS_MM))
    slab = max(1, round(thickness / 1.4))  # fine slices rendered per acquired slice (partial volume)
    half = (rng.uniform(150, 180), rng.uniform(120, 140))
    core_range = (-rng.uniform(55, 85), rng.uniform(55, 80))
    shift = rng.uniform(-10, 10, size=3)
    n_core = int((core_range[1] - core_range[0]) / thickness)
    below = max(0, round((core_range[0] + outer.uniform(*CAUDAL_MM)) / thickness))
    above = max(0, round((outer.uniform(*CRANIAL_MM) - core_range[0]) / thickness) - n_core)
    fine = (np.arange((below + n_core + above) * slab) + 0.5 - below * slab) * thickness / slab
    axes = (
        np.arange(-half[0], half[0], in_plane) + shift[0],
        np.arange(-half[1], half[1], in_plane) + shift[1],
        core_range[0] + shift[2] + fine,
    )
    core_z = core_range[0] + shift[2] + (np.arange(n_core * slab) + 0.5) * thickness / slab
    return ScanGrid(axes, in_plane, thickness, slab, core_z)


def _slab_label(mask: np.ndarray, k: int) -> np.ndarray:
    """A voxel of a thick slice is labelled when at least half of its fine slices are."""
    n = mask.shape[2] // k
    count = mask[..., : n * k].reshape(*mask.shape[:2], n, k).sum(-1, dtype=np.uint8)
    return (2 * count >= k).astype(np.uint8)
