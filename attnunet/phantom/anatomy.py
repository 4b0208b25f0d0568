"""Anatomy of the phantom: a tissue map of a whole abdominal scan, the pancreas in its real neighbourhood.

Shapes are drawn in world millimetres (RAS: +x patient right, +y anterior, +z superior); the finished
map is then bent by a smooth random displacement field (elastic deformation), so no two cases share
a shape. The relations follow the anatomy textbooks and the TotalSegmentator
multi-organ map of a real CT that the project keeps for reference (its organ *positions* were only
looked at, never copied; no voxel of it is used as a template):

- pancreas as one lobulated tube uncinate -> head -> neck -> body -> tail, the head in the duodenal
  C-loop right of the superior mesenteric vein (SMV), the neck anterior to the SMV/portal confluence,
  the body anterior to the aorta and superior mesenteric artery (SMA), the tail at the splenic hilum
  anterior to the left kidney; a part of its volume is interlobular fat (fatty lobulation);
- splenic vein along the posterior border of body and tail, splenic artery along the upper border,
  SMV and portal vein behind the neck, SMA with its fat collar left of the SMV, left renal vein between
  aorta and SMA;
- duodenum (bulb, descending, horizontal and ascending parts) around the head, stomach anterior to
  body and tail, jejunal loops (often collapsed: soft-tissue filled) below and left, colon, liver,
  gallbladder, spleen, kidneys, spine, psoas and paraspinal muscles, body wall.

That is generator v2, whose field of view ended 55-85 mm below and 55-80 mm above the gland; its code
and its random draws (``rng``, in v2's order) are kept, so a v3 case has its v2 case's pancreas
neighbourhood (except where v2's grid clipped the gland's box: see :func:`make_anatomy`). Generator
v3 adds, from a second random stream (``extra``), what a real scan shows beyond that, from the heart
and lung bases down to the pelvis: :mod:`~.skeleton` (spine and sacrum, ribs, sternum, bony pelvis),
:mod:`~.lower_abdomen` (iliac vessels, psoas to the groin, ureters, colon to the rectum, small bowel,
mesentery, bladder) and :mod:`~.thorax` (diaphragm and lungs, heart, fundus, oesophagus).
Generator v5 keeps every tissue voxel and changes the label only: :func:`annotated_pancreas`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from attnunet.phantom import implants, lower_abdomen, skeleton, thorax
from attnunet.phantom.canvas import Canvas, Tissue, among, densify, random_walk, resample, smooth
from attnunet.utils.geometry import bounding_box


@dataclass
class Anatomy:
    """Tissue map and labels on the (fine) rendering grid."""

    tissue: np.ndarray  # uint8 Tissue per voxel
    pancreas: np.ndarray  # bool: the annotated gland (:func:`annotated_pancreas`), lesion excluded
    lesion: np.ndarray  # bool
    centerline: np.ndarray  # (N, 3) pancreas centre line, uncinate to tail (mm)
    implants: list[str]  # names of the metal implants painted (generator v4), often none


def make_anatomy(
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
    extra: np.random.Generator,
    core_z: np.ndarray,
    lesions: bool = False,
    added: np.random.Generator | None = None,
) -> Anatomy:
    """Paint one random abdomen on the grid given by its world axes (mm, RAS, pancreas neck near 0).

    Args:
        rng: everything generator v2 drew, in v2's order. Its draws do not depend on the grid's z
            range, except where v2's grid clipped the gland's box (its lobules and fatty septa are
            drawn as noise over that box): there v2's draws are kept up to the gland only.
        extra: what v3 adds (regions beyond v2's field of view, the warp field).
        core_z: generator v2's fine z axis (mm, as v2 computed it), on which v2's loops, stranding
            and vessel ends are laid out and whose warp draws ``rng`` skips.
        added: what v4 adds (metal implants, :mod:`~.implants`); none when None.
    """
    cv = Canvas(axes)
    u = rng.uniform
    zlo, zhi = float(axes[2][0]), float(axes[2][-1])
    v2_lo, v2_hi = float(core_z[0]), float(core_z[-1])

    # Body wall: skin/subcutaneous fat, muscle, cavity (visceral fat). Elliptic cylinders.
    cx, cy = u(-8, 8), u(-5, 10)
    ax_, ay_ = u(135, 170), u(100, 130)
    fat_t, wall_t = u(8, 35), u(8, 14)
    x, y, _ = cv.coords
    outer = ((x - cx) / ax_) ** 2 + ((y - cy) / ay_) ** 2
    cv.tissue[np.broadcast_to(outer <= 1, cv.shape)] = Tissue.SUBCUTANEOUS_FAT
    ai, bi = ax_ - fat_t, ay_ - fat_t
    cv.tissue[np.broadcast_to(((x - cx) / ai) ** 2 + ((y - cy) / bi) ** 2 <= 1, cv.shape)] = Tissue.MUSCLE
    ai, bi = ai - wall_t, bi - wall_t
    cavity = np.broadcast_to(((x - cx) / ai) ** 2 + ((y - cy) / bi) ** 2 <= 1, cv.shape)
    cv.tissue[cavity] = Tissue.VISCERAL_FAT

    # Spine, psoas and great vessels as v2 drew them; painted over the whole z range with the rest of
    # the skeleton (sacrum, ribs, sternum, bony pelvis), the iliac vessels and the psoas to the groin.
    ys = cy - ay_ + fat_t + u(60, 75)
    xs = cx + u(-4, 4)
    spine = skeleton.draw_spine(rng, v2_lo, v2_hi)
    psoas_top = u(-20, 10)
    psoas = [((u(26, 32), u(0, 8)), (u(40, 50), u(5, 15))) for _ in (1, -1)]
    xa, ya = xs + u(-16, -6), ys + u(26, 32)
    ra = u(9, 12.5)
    xi, yi = xs + u(20, 30), ys + u(22, 30)
    ivc = (xi, yi, u(10, 13), u(7, 10))
    trunk = skeleton.draw_body(extra, cx, cy, ai, bi, wall_t, xs, ys, spine)
    skeleton.paint_spine(cv, extra, trunk, spine, zhi)
    skeleton.paint_ribs(cv, extra, trunk, zlo, zhi)
    skeleton.paint_pelvis(cv, extra, trunk)
    lower_abdomen.paint_vessels(cv, extra, trunk, (xa, ya, ra), ivc)
    lower_abdomen.paint_psoas(cv, extra, trunk, psoas_top, psoas)

    # Solid organs: kidneys, liver (+ gallbladder), spleen.
    kidneys = {}
    for side, zc in ((1, u(-40, -15)), (-1, u(-25, 0))):
        c = np.array([xs + side * u(55, 70), ys + u(5, 15), zc])
        rk = np.array([u(22, 28), u(20, 25), u(48, 58)])
        cv.ellipsoid(c, rk + 6, Tissue.VISCERAL_FAT, on=(Tissue.VISCERAL_FAT, Tissue.MUSCLE))  # perirenal fat
        cv.ellipsoid(c, rk, Tissue.KIDNEY_CORTEX)
        cv.ellipsoid(c, rk - u(6, 9), Tissue.KIDNEY_MEDULLA)
        cv.ellipsoid(c + [-side * 12, 6, 0], (10, 8, rk[2] * 0.5), Tissue.VISCERAL_FAT)  # renal sinus
        kidneys[side] = (c, rk)
    liver_c = np.array([cx + u(70, 85), cy + u(-15, 10), u(55, 75)])
    liver_r = np.array([u(60, 75), u(75, 95), u(70, 85)])
    liver_on = (Tissue.VISCERAL_FAT, Tissue.KIDNEY_CORTEX, Tissue.KIDNEY_MEDULLA)
    cv.ellipsoid(liver_c, liver_r, Tissue.LIVER, on=(Tissue.VISCERAL_FAT,))
    cv.ellipsoid((cx + u(-25, 0), cy + u(20, 40), u(50, 75)), (u(40, 55), u(28, 38), u(30, 45)), Tissue.LIVER, liver_on)
    gb = (liver_c[0] - u(25, 40), cy + u(25, 45), u(-5, 20))
    cv.ellipsoid(gb, (u(11, 16), u(13, 18), u(25, 35)), Tissue.BILE, on=(Tissue.LIVER, Tissue.VISCERAL_FAT))
    spleen_c = np.array([xs - u(80, 95), ys + u(15, 35), u(25, 55)])
    cv.ellipsoid(spleen_c, (u(20, 28), u(40, 55), u(40, 55)), Tissue.SPLEEN, on=(Tissue.VISCERAL_FAT,))
    # Lung bases above the diaphragm domes (the liver dome under the right one), heart on the middle.
    rng.uniform(size=12)  # v2's lung-base ellipsoids, replaced by the domes: skipped to keep v2's draws
    dome = thorax.paint_lungs(cv, extra, trunk)
    thorax.paint_heart(cv, extra, trunk, dome, (xa, ya, ra))

    # Pancreas control points: uncinate -> head -> neck -> body -> tail.
    r_neck = u(6.5, 9)
    neck = np.array([xa + u(15, 28), ya + u(24, 34), u(-4, 4)])
    head = np.array([neck[0] + u(20, 32), neck[1] - u(4, 14), neck[2] - u(10, 22)])
    uncinate = np.array([head[0] - u(12, 20), ya + u(4, 10), head[2] - u(10, 18)])
    body = np.array([xa - u(8, 25), ya + u(24, 36), u(0, 12)])
    tail = np.array([spleen_c[0] + u(18, 30), spleen_c[1] + u(-5, 12), spleen_c[2] - u(10, 30)])
    nodes = np.array([uncinate, head, neck, body, tail])
    node_r = np.array([u(7, 10), u(11, 16), r_neck, u(8, 11.5), u(7, 10.5)]) * u(0.8, 1.1)
    curve = densify(nodes, step=1.0)
    chord = np.r_[0, np.cumsum(np.linalg.norm(np.diff(nodes, axis=0), axis=1))]
    arclen = np.r_[0, np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))]
    radius = np.interp(arclen / arclen[-1], chord / chord[-1], node_r)

    # Bowel, painted only into fat: jejunal/ileal loops, colon, then stomach and duodenum.
    def content() -> Tissue:
        return lower_abdomen.LOOP_CONTENT[int(rng.choice(3, p=[0.45, 0.4, 0.15]))]

    soft = (Tissue.VISCERAL_FAT,)
    colon_r = u(17, 24)
    colon = [
        (xs + ai * u(0.55, 0.7), ys + u(10, 30), v2_lo - 20),
        (xs + ai * u(0.5, 0.65), cy + u(-10, 20), neck[2] - u(5, 25)),
        (cx + u(-10, 10), cy + bi - u(25, 40), neck[2] - u(25, 60)),
        (xs - ai * u(0.55, 0.7), cy + u(0, 25), neck[2] + u(10, 30)),
        (xs - ai * u(0.6, 0.75), ys + u(10, 30), v2_lo - 20),
    ]
    colon_fill = Tissue.STOOL if rng.random() < 0.6 else Tissue.GAS
    bladder = lower_abdomen.paint_pelvic_organs(cv, extra, trunk)
    lower_abdomen.paint_colon(cv, extra, trunk, colon, colon_r, colon_fill)
    lower_abdomen.paint_ureters(cv, extra, trunk, kidneys, bladder)
    for _ in range(int(rng.integers(18, 32))):
        start = (cx + u(-0.75, 0.55) * ai, u(ya + 15, cy + bi * 0.8), u(v2_lo - 10, neck[2] + 15))
        loop = random_walk(rng, start, int(rng.integers(6, 16)), 7.0, u(0.6, 0.85))
        cv.tube(loop, u(7, 12), Tissue.BOWEL_WALL, content(), wall_mm=u(2, 3.5), on=soft)
    lower_abdomen.paint_small_bowel(cv, extra, trunk, v2_lo + 10, zlo - 10)
    # Mesenteric vessels fanning out anteriorly and caudally from the SMA/SMV.
    for _ in range(int(rng.integers(10, 24))):
        start = (xa + u(0, 25), ya + u(15, 30), neck[2] - u(10, 60))
        twig = random_walk(rng, start, int(rng.integers(4, 10)), 6.0, 0.8)
        kind = Tissue.ARTERY if rng.random() < 0.5 else Tissue.PORTAL_VEIN
        cv.tube(twig, u(1.2, 2.5), kind, None, on=soft)
    # Fat stranding: thin vessels, lymphatics and septa everywhere in the visceral fat, which partial
    # volume turns into the -80..0 HU that a fatty pancreas shows too.
    for _ in range(int(rng.integers(40, 90))):
        start = (cx + u(-0.85, 0.85) * ai, u(ys, cy + bi * 0.9), u(v2_lo, v2_hi))
        strand = random_walk(rng, start, int(rng.integers(3, 8)), 6.0, 0.7)
        cv.tube(strand, u(0.6, 1.4), Tissue.BOWEL_WALL if rng.random() < 0.5 else Tissue.MUSCLE, None, on=soft)
    # Lymph nodes: small soft-tissue ovoids in the mesentery and around the vessels.
    for _ in range(int(rng.integers(4, 14))):
        c = (xa + u(-40, 50), ya + u(0, 60), neck[2] + u(-50, 20))
        cv.ellipsoid(c, (u(3, 7), u(3, 6), u(4, 9)), Tissue.BOWEL_WALL, on=soft)
    ileocaecal = np.array([xs + ai * extra.uniform(0.2, 0.35), ys + extra.uniform(40, 60), trunk.z_crest - 20])
    lower_abdomen.paint_mesentery(cv, extra, trunk, ((xa + 5, ya + 30, v2_lo - 20), ileocaecal), v2_lo, zlo)
    lower_abdomen.paint_fat_stranding(cv, extra, trunk, zlo, v2_lo)
    lower_abdomen.paint_fat_stranding(cv, extra, trunk, v2_hi, zhi)
    stomach_c = np.array([xs - u(30, 55), cy + u(25, 45), u(30, 55)])
    stomach_r = np.array([u(38, 55), u(26, 36), u(35, 50)])
    stomach_c[1] = max(stomach_c[1], body[1] + node_r[3] + stomach_r[1] * 0.7 + u(0, 6))  # anterior to body
    stomach_wall = u(3, 6)
    if cv.box(stomach_c - stomach_r, stomach_c + stomach_r) is not None:
        fill = [Tissue.FOOD, Tissue.BOWEL_FLUID, Tissue.BOWEL_WALL][int(rng.integers(3))]
        stomach_on = (Tissue.VISCERAL_FAT, Tissue.LIVER, Tissue.BOWEL_WALL, Tissue.BOWEL_FLUID, Tissue.GAS)
        box, inner = cv.hollow(stomach_c, stomach_r, stomach_wall, Tissue.BOWEL_WALL, fill, on=stomach_on)
        level = stomach_c[1] + stomach_r[1] * u(-0.2, 0.9)  # air-fluid level: gas rises anteriorly (supine)
        cv.paint(box, inner & (cv.local(box)[1] > level), Tissue.GAS)
        thorax.paint_fundus(cv, extra, dome, stomach_c, stomach_r, stomach_wall, fill)
    cardia = stomach_c + [stomach_r[0] * 0.3, -stomach_r[1] * 0.2, stomach_r[2] * 0.7]
    thorax.paint_oesophagus(cv, extra, (xa, ya, ra), cardia, zhi)
    pylorus = np.array([xs + u(5, 20), stomach_c[1] - u(0, 10), neck[2] + u(10, 22)])
    cv.tube([stomach_c + [stomach_r[0] * 0.5, 0, -10], pylorus], u(10, 14), Tissue.BOWEL_WALL, content(), on=soft)
    d_r = u(9, 13)
    d2x = head[0] + node_r[1] + d_r + u(0, 4)
    duodenum = [
        pylorus,
        (d2x - 4, head[1] + u(0, 10), neck[2] + u(5, 15)),
        (d2x, head[1] + u(-5, 5), head[2] - u(0, 10)),
        (d2x - 5, ya + u(6, 14), uncinate[2] - u(15, 25)),
        (xa - u(0, 8), ya + u(14, 20), uncinate[2] - u(15, 25)),
        (xa - u(25, 35), ya + u(18, 28), body[2] - u(10, 20)),
    ]
    cv.tube(duodenum, d_r, Tissue.BOWEL_WALL, content(), on=soft + (Tissue.BOWEL_WALL, Tissue.BOWEL_FLUID, Tissue.GAS))

    # The pancreas itself (lobulated envelope, interlobular fat), then the vessels that border it.
    box, dist, along = cv.tube_distance(curve, float(radius.max()) * 1.4)
    pancreas = np.zeros(cv.shape, dtype=bool)
    lesion = np.zeros(cv.shape, dtype=bool)
    if box is not None:
        sub = dist.shape
        lobules = smooth(sub, rng, 3.0 / cv.spacing)
        envelope = dist <= np.interp(along, arclen / arclen[-1], radius) * (1 + u(0.1, 0.25) * lobules)
        pancreas[box] = envelope & ~np.isin(cv.tissue[box], (Tissue.ARTERY, Tissue.SYSTEMIC_VEIN))
        cv.tissue[pancreas] = Tissue.PANCREAS
        fat_fraction = rng.choice([u(0.0, 0.1), u(0.1, 0.3), u(0.3, 0.5)])
        septa = smooth(sub, rng, 1.5 / cv.spacing)
        if fat_fraction > 0:
            thr = np.quantile(septa[envelope], 1 - fat_fraction) if envelope.any() else np.inf
            cv.paint(box, envelope & (septa > thr), Tissue.PANCREAS_FAT, on=(Tissue.PANCREAS,))
        if lesions and rng.random() < 0.7:
            c = curve[int(rng.integers(len(curve) // 6, len(curve) * 5 // 6))]
            lbox, mask = cv.ellipsoid(c, (u(5, 11),) * 3)
            if lbox is not None:
                lesion[lbox] = mask
                lesion &= pancreas
                cv.tissue[lesion] = Tissue.LESION
    pancreas &= ~lesion

    # SMV behind the neck, continuing as the portal vein towards the liver hilum.
    r_v = u(5, 7.5)
    confluence = neck + [u(-4, 2), -(r_neck + r_v + u(0, 2)), 0]
    smv = [(confluence[0] + u(-3, 3), confluence[1] + u(0, 8), v2_lo - 20), confluence - [0, 0, 10], confluence]
    portal = [confluence, confluence + [u(20, 35), -u(5, 15), u(25, 40)]]
    vessel_on = (*soft, Tissue.PANCREAS, Tissue.PANCREAS_FAT, Tissue.BOWEL_WALL, Tissue.BOWEL_FLUID, Tissue.GAS)
    cv.tube(smv, r_v, Tissue.PORTAL_VEIN, None, on=vessel_on)
    cv.tube(portal, r_v + u(0, 2), Tissue.PORTAL_VEIN, None, on=vessel_on + (Tissue.LIVER,))
    # SMA: from the aorta, anterior, then caudally left of the SMV, in its fat collar.
    r_sma = u(3, 4.5)
    sma = [
        (xa, ya + ra - 2, neck[2] + u(10, 20)),
        (xa + u(0, 5), ya + u(12, 18), neck[2] - 5),
        (xa + u(0, 8), ya + u(25, 40), v2_lo - 20),
    ]
    cv.tube(sma, r_sma + u(2.5, 5), Tissue.VISCERAL_FAT, None, on=vessel_on)
    cv.tube(sma, r_sma, Tissue.ARTERY, None, on=(Tissue.VISCERAL_FAT,))
    # Below v2's field of view both run on, tapering, in the mesentery to the ileocaecal region.
    for start, r, kind, dx in ((sma[-1], r_sma, Tissue.ARTERY, 0), (smv[0], r_v, Tissue.PORTAL_VEIN, 12)):
        path, taper = resample([start, ileocaecal + [dx - 25, 0, 35], ileocaecal + [dx, 0, 0]], 5.0, [r, 0.7 * r, 2])
        cv.capsule_tube(path, taper + 2, Tissue.VISCERAL_FAT, on=vessel_on)
        cv.capsule_tube(path, taper, kind, on=(Tissue.VISCERAL_FAT,))
    # Left renal vein between the aorta and the SMA to the IVC.
    lk, _ = kidneys[-1]
    lrv_z = lk[2] + u(-5, 10)
    cv.tube(
        [lk + [20, 0, 0], (xa, ya + ra + u(3, 6), lrv_z), (xi, yi, lrv_z)],
        u(4, 5.5),
        Tissue.SYSTEMIC_VEIN,
        None,
        on=(Tissue.VISCERAL_FAT,),
    )
    # Splenic vein along the posterior border of neck, body and tail; splenic artery above it.
    i_neck = int(np.argmin(np.linalg.norm(curve - neck, axis=1)))
    r_sv = u(3.5, 5.5)
    back = curve[i_neck:] - np.outer(radius[i_neck:] + r_sv - u(0, 2), [0, 1, 0])
    hilum = spleen_c + [u(15, 22), u(0, 10), u(-15, 0)]
    cv.tube(np.vstack([confluence, back[::8], hilum]), r_sv, Tissue.PORTAL_VEIN, None, on=vessel_on)
    wiggle = np.sin(np.linspace(0, u(3, 8) * np.pi, len(back)))[:, None] * [0, u(2, 5), 0]
    top = curve[i_neck:] + np.outer(radius[i_neck:] + u(1, 4), [0, 0, 1]) + wiggle
    cv.tube(np.vstack([(xa, ya, neck[2] + 15), top[::6]]), u(2, 3.2), Tissue.ARTERY, None, on=vessel_on)

    thorax.paint_mediastinum(cv, trunk, dome)
    metal = [] if added is None else implants.paint_implants(cv, added, trunk, (np.asarray(gb) + confluence) / 2)

    # One elastic warp over the whole grid (from ``extra``); v2's field draws (its coarse field's
    # size from v2's own grid and spacing, as v2 computed them) are skipped in ``rng``.
    warp_mm = rng.uniform(2.0, 5.0)
    v2_spacing = (*cv.spacing[:2], float(core_z[1] - core_z[0]))
    coarse_v2 = [max(3, int(n * s / 15)) for n, s in zip((*cv.shape[:2], len(core_z)), v2_spacing)]
    rng.standard_normal(size=3 * int(np.prod(coarse_v2)))
    tissue = cv.warped(extra, warp_mm, cv.tissue)[0]
    pancreas = annotated_pancreas(tissue, cv.spacing)
    lesion = tissue == Tissue.LESION
    return Anatomy(tissue, pancreas, lesion, curve, metal)


ENCLOSED_FAT_MM = 3.0  # interlobular fat narrower than about twice this, inside the gland, is labelled


def annotated_pancreas(tissue: np.ndarray, spacing: np.ndarray, radius_mm: float = ENCLOSED_FAT_MM) -> np.ndarray:
    """The pancreas as an annotator outlines it: ``tissue`` ``(X, Y, Z)`` -> bool mask, same shape.

    The visible parenchyma (and any lesion in it), closed by a ball of ``radius_mm`` rounded to whole
    voxels per axis of the fine grid ``spacing`` (at least one; 2 voxels, 2.5-4 mm, on the
    generator's 1.25-2 mm grids), within the painted envelope (parenchyma plus interlobular fat);
    lesions are left out (they have a label of their own). So fat clefts
    between lobules count as gland, while a fat lobule at the gland's edge, which looks exactly
    like the peripancreatic fat beside it, does not. Generators up to v4 labelled the whole
    envelope: in a gland of 30-50 % fat a sixth of its label was such edge fat, and a model trained
    on them marked peripancreatic fat on a real CT as pancreas (docs/benchmarks.md, sim-to-real).
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
