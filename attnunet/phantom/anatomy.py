"""Anatomy of the phantom: a tissue map of a whole abdominal scan, the pancreas in its real neighbourhood.

Shapes are drawn in world millimetres (RAS: +x patient right, +y anterior, +z superior); the finished
map is then bent by a smooth random displacement field (elastic deformation), so no two cases share
a shape. The relations follow the anatomy textbooks and the TotalSegmentator
multi-organ map of a real CT that the project keeps for reference (its organ *positions* were only
looked at, never copied; no voxel of it is used as a template). Each region has its painters:
:mod:`~.upper_abdomen` (body wall, solid organs, bowel, stomach and duodenum), :mod:`~.pancreas` (the
gland and its vessels), :mod:`~.skeleton` (spine and sacrum, ribs, sternum, bony pelvis),
:mod:`~.lower_abdomen` (iliac vessels, psoas to the groin, ureters, colon to the rectum, small bowel,
mesentery, bladder), :mod:`~.thorax` (diaphragm and lungs, heart, fundus, oesophagus) and
:mod:`~.implants`; :func:`make_anatomy` calls them in a fixed order, on which each random stream's draws depend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from attnunet.phantom import implants, lower_abdomen, pancreas, skeleton, thorax, upper_abdomen
from attnunet.phantom.canvas import Canvas, Tissue, among
from attnunet.phantom.pancreas import Aorta
from attnunet.phantom.upper_abdomen import BodyWall
from attnunet.utils.geometry import bounding_box

# Draws of the core stream that paint nothing (the lungs come from the outer stream, with the
# diaphragm domes); they are drawn and dropped so that every later draw of that stream, and with it
# every case of the data set that GENERATOR_VERSION names, stays as it is.
SKIPPED_LUNG_DRAWS = 12


@dataclass
class Anatomy:
    """Tissue map and labels on the (fine) rendering grid."""

    tissue: np.ndarray  # uint8 Tissue per voxel
    pancreas: np.ndarray  # bool: the annotated gland (:func:`annotated_pancreas`), lesion excluded
    lesion: np.ndarray  # bool
    centerline: np.ndarray  # (N, 3) pancreas centre line, uncinate to tail (mm)
    implants: list[str]  # names of the metal implants painted, often none


@dataclass
class Trunk:
    """The trunk's frame: vertebral levels and landmarks, and the great vessels (mm)."""

    body: skeleton.Body
    aorta: Aorta
    ivc: tuple[float, float, float, float]  # x, y, radius_x, radius_y


def make_anatomy(
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
    outer: np.random.Generator,
    core_z: np.ndarray,
    lesions: bool = False,
    findings: np.random.Generator | None = None,
) -> Anatomy:
    """Paint one random abdomen on the grid given by its world axes (mm, RAS, pancreas neck near 0).

    Args:
        rng: the core stream: the pancreas's neighbourhood within ``core_z``. Its draws do not
            depend on the grid's z range, except where the core grid alone would clip the gland's
            box (its lobules and fatty septa are drawn as noise over that box).
        outer: the outer stream: what lies beyond ``core_z`` (thorax, lower abdomen, pelvis) and the
            warp field.
        core_z: the core fine z axis (mm), on which the bowel loops, stranding and vessel ends are
            laid out and whose warp draws ``rng`` skips.
        findings: the findings stream: metal implants (:mod:`~.implants`); none when None.
    """
    cv = Canvas(axes)
    core = (float(core_z[0]), float(core_z[-1]))
    wall = upper_abdomen.paint_body_wall(cv, rng)
    trunk = paint_trunk(cv, rng, outer, wall, core)
    body = trunk.body
    organs = upper_abdomen.paint_solid_organs(cv, rng, body)
    # Lung bases above the diaphragm domes (the liver dome under the right one), heart on the middle.
    rng.uniform(size=SKIPPED_LUNG_DRAWS)
    dome = thorax.paint_lungs(cv, outer, body)
    thorax.paint_heart(cv, outer, body, dome, trunk.aorta)
    gland = pancreas.draw_gland(rng, trunk.aorta, organs.spleen_c)
    neck_z = float(gland.neck[2])
    ileocaecal = upper_abdomen.paint_bowel(cv, rng, outer, body, trunk.aorta, organs, neck_z, core)
    upper_abdomen.paint_stomach_and_duodenum(cv, rng, outer, body, trunk.aorta, dome, gland)
    pancreas.paint_gland(cv, rng, gland, lesions)
    confluence = pancreas.paint_gland_vessels(
        cv, rng, gland, trunk.aorta, trunk.ivc, organs.kidneys, organs.spleen_c, ileocaecal, core[0] - 20
    )
    thorax.paint_mediastinum(cv, body, dome)
    clips_at = (np.asarray(organs.gallbladder) + confluence) / 2
    metal = [] if findings is None else implants.paint_implants(cv, findings, body, clips_at)
    tissue = warp(cv, rng, outer, core_z)
    return Anatomy(tissue, annotated_pancreas(tissue, cv.spacing), tissue == Tissue.LESION, gland.curve, metal)


def paint_trunk(
    cv: Canvas, rng: np.random.Generator, outer: np.random.Generator, wall: BodyWall, core: tuple[float, float]
) -> Trunk:
    """Spine, psoas and great vessels (sizes from ``rng``), painted over the whole z range with the
    rest of the skeleton (sacrum, ribs, sternum, bony pelvis), the iliac vessels and the psoas to the
    groin (from ``outer``)."""
    u = rng.uniform
    ys = wall.back + u(60, 75)
    xs = wall.cx + u(-4, 4)
    spine = skeleton.draw_spine(rng, *core)
    psoas_top = u(-20, 10)
    psoas = [((u(26, 32), u(0, 8)), (u(40, 50), u(5, 15))) for _ in (1, -1)]
    xa, ya = xs + u(-16, -6), ys + u(26, 32)
    ra = u(9, 12.5)
    xi, yi = xs + u(20, 30), ys + u(22, 30)
    ivc = (xi, yi, u(10, 13), u(7, 10))
    zlo, zhi = float(cv.axes[2][0]), float(cv.axes[2][-1])
    body = skeleton.draw_body(outer, wall.cx, wall.cy, wall.ai, wall.bi, wall.wall, xs, ys, spine)
    skeleton.paint_spine(cv, outer, body, spine, zhi)
    skeleton.paint_ribs(cv, outer, body, zlo, zhi)
    skeleton.paint_pelvis(cv, outer, body)
    lower_abdomen.paint_vessels(cv, outer, body, (xa, ya, ra), ivc)
    lower_abdomen.paint_psoas(cv, outer, body, psoas_top, psoas)
    return Trunk(body, (xa, ya, ra), ivc)


def warp(cv: Canvas, rng: np.random.Generator, outer: np.random.Generator, core_z: np.ndarray) -> np.ndarray:
    """The painted map bent by one elastic warp over the whole grid (field from ``outer``). ``rng``
    draws only the warp's strength, then drops as many draws as a field over the core grid alone
    would take (its coarse size from that grid and its spacing): every later draw of ``rng`` (the
    appearance, the scanner) then depends on the core grid only, not on the field of view's extent."""
    warp_mm = rng.uniform(2.0, 5.0)
    core_spacing = (*cv.spacing[:2], float(core_z[1] - core_z[0]))
    coarse_core = [max(3, int(n * s / 15)) for n, s in zip((*cv.shape[:2], len(core_z)), core_spacing)]
    rng.standard_normal(size=3 * int(np.prod(coarse_core)))
    return cv.warped(outer, warp_mm, cv.tissue)[0]


ENCLOSED_FAT_MM = 3.0  # interlobular fat narrower than about twice this, inside the gland, is labelled


def annotated_pancreas(tissue: np.ndarray, spacing: np.ndarray, radius_mm: float = ENCLOSED_FAT_MM) -> np.ndarray:
    """The pancreas as an annotator outlines it: ``tissue`` ``(X, Y, Z)`` -> bool mask, same shape.

    The visible parenchyma (and any lesion in it), closed by a ball of ``radius_mm`` rounded to whole
    voxels per axis of the fine grid ``spacing`` (at least one; 2 voxels, 2.5-4 mm, on the
    generator's 1.25-2 mm grids), within the painted envelope (parenchyma plus interlobular fat);
    lesions are left out (they have a label of their own). So fat clefts
    between lobules count as gland, while a fat lobule at the gland's edge, which looks exactly
    like the peripancreatic fat beside it, does not: a label of the whole envelope made a model
    trained on it mark peripancreatic fat on a real CT as pancreas.
    """
    envelope = among(tissue, (Tissue.PANCREAS, Tissue.LESION, Tissue.PANCREAS_FAT))
    reach = np.maximum(np.rint(radius_mm / np.asarray(spacing, float)).astype(int), 1)
    box = bounding_box(envelope, margin=int(reach.max()) + 1)
    if box is None:
        return envelope
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    ball = sum((g / r) ** 2 for g, r in zip(grid, reach)) <= 1.0
    # Everything below happens inside the gland's box; outside it the label is empty.
    sub = tissue[box]
    gland = among(sub, (Tissue.PANCREAS, Tissue.LESION))
    # scipy's closing erodes from outside the array: keep the gland itself where the box meets an edge.
    closed = ndimage.binary_closing(gland, structure=ball) | gland
    label = np.zeros_like(envelope)
    label[box] = closed & envelope[box] & (sub != Tissue.LESION)
    return label
