"""The upper abdomen around the pancreas: body wall, solid organs, bowel, stomach and duodenum.

World mm (RAS) as in :mod:`~.anatomy`: body wall (skin and subcutaneous fat, muscle, the cavity's
visceral fat) as elliptic cylinders; kidneys in their perirenal fat, liver with the gallbladder,
spleen; jejunal loops (often collapsed: soft-tissue filled) below and left, mesenteric vessels, fat
stranding and lymph nodes; the stomach anterior to the gland's body and tail, the duodenum (bulb,
descending, horizontal and ascending parts) around its head. Bowel is painted into fat only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnunet.phantom import lower_abdomen, thorax
from attnunet.phantom.canvas import Canvas, Tissue, random_walk
from attnunet.phantom.pancreas import Aorta, Gland, Kidneys
from attnunet.phantom.skeleton import Body

T = Tissue
FAT = (T.VISCERAL_FAT,)


@dataclass
class BodyWall:
    """One body wall's elliptic cross-section (mm)."""

    cx: float  # centre
    cy: float
    ai: float  # semi-axes of the cavity (inner edge of the muscle wall)
    bi: float
    wall: float  # muscle wall thickness
    back: float  # y of the posterior wall's outer muscle edge


@dataclass
class SolidOrgans:
    """Where the solid organs lie (mm)."""

    kidneys: Kidneys
    gallbladder: tuple[float, float, float]  # centre
    spleen_c: np.ndarray  # centre


def paint_body_wall(cv: Canvas, rng: np.random.Generator) -> BodyWall:
    """Skin and subcutaneous fat, the muscle wall and the cavity (visceral fat), along the whole z range."""
    u = rng.uniform
    cx, cy = u(-8, 8), u(-5, 10)
    ax_, ay_ = u(135, 170), u(100, 130)
    fat_t, wall_t = u(8, 35), u(8, 14)
    x, y, _ = cv.coords
    outer = ((x - cx) / ax_) ** 2 + ((y - cy) / ay_) ** 2
    cv.tissue[np.broadcast_to(outer <= 1, cv.shape)] = T.SUBCUTANEOUS_FAT
    ai, bi = ax_ - fat_t, ay_ - fat_t
    cv.tissue[np.broadcast_to(((x - cx) / ai) ** 2 + ((y - cy) / bi) ** 2 <= 1, cv.shape)] = T.MUSCLE
    ai, bi = ai - wall_t, bi - wall_t
    cavity = np.broadcast_to(((x - cx) / ai) ** 2 + ((y - cy) / bi) ** 2 <= 1, cv.shape)
    cv.tissue[cavity] = T.VISCERAL_FAT
    return BodyWall(cx, cy, ai, bi, wall_t, cy - ay_ + fat_t)


def paint_solid_organs(cv: Canvas, rng: np.random.Generator, body: Body) -> SolidOrgans:
    """Kidneys (cortex, medulla, sinus fat, perirenal fat), liver (two lobes) with the gallbladder, spleen."""
    u = rng.uniform
    xs, ys, cx, cy = body.xs, body.ys, body.cx, body.cy
    kidneys = {}
    for side, zc in ((1, u(-40, -15)), (-1, u(-25, 0))):
        c = np.array([xs + side * u(55, 70), ys + u(5, 15), zc])
        rk = np.array([u(22, 28), u(20, 25), u(48, 58)])
        cv.ellipsoid(c, rk + 6, T.VISCERAL_FAT, on=(T.VISCERAL_FAT, T.MUSCLE))  # perirenal fat
        cv.ellipsoid(c, rk, T.KIDNEY_CORTEX)
        cv.ellipsoid(c, rk - u(6, 9), T.KIDNEY_MEDULLA)
        cv.ellipsoid(c + [-side * 12, 6, 0], (10, 8, rk[2] * 0.5), T.VISCERAL_FAT)  # renal sinus
        kidneys[side] = (c, rk)
    liver_c = np.array([cx + u(70, 85), cy + u(-15, 10), u(55, 75)])
    liver_r = np.array([u(60, 75), u(75, 95), u(70, 85)])
    liver_on = (T.VISCERAL_FAT, T.KIDNEY_CORTEX, T.KIDNEY_MEDULLA)
    cv.ellipsoid(liver_c, liver_r, T.LIVER, on=FAT)
    cv.ellipsoid((cx + u(-25, 0), cy + u(20, 40), u(50, 75)), (u(40, 55), u(28, 38), u(30, 45)), T.LIVER, liver_on)
    gb = (liver_c[0] - u(25, 40), cy + u(25, 45), u(-5, 20))
    cv.ellipsoid(gb, (u(11, 16), u(13, 18), u(25, 35)), T.BILE, on=(T.LIVER, T.VISCERAL_FAT))
    spleen_c = np.array([xs - u(80, 95), ys + u(15, 35), u(25, 55)])
    cv.ellipsoid(spleen_c, (u(20, 28), u(40, 55), u(40, 55)), T.SPLEEN, on=FAT)
    return SolidOrgans(kidneys, gb, spleen_c)


def loop_content(rng: np.random.Generator) -> Tissue:
    """What a bowel loop holds: collapsed (wall), fluid or gas."""
    return lower_abdomen.LOOP_CONTENT[int(rng.choice(3, p=[0.45, 0.4, 0.15]))]


def paint_bowel(
    cv: Canvas,
    rng: np.random.Generator,
    outer: np.random.Generator,
    body: Body,
    aorta: Aorta,
    organs: SolidOrgans,
    neck_z: float,
    core: tuple[float, float],
) -> np.ndarray:
    """Colon, bladder, ureters and bowel loops, mesenteric vessels, fat stranding and lymph nodes.

    ``rng`` lays out what lies within ``core`` (the z range, mm, around the gland whose neck is at
    ``neck_z``); ``outer`` what :mod:`~.lower_abdomen` paints beyond it. Returns the ileocaecal
    region (mm), where the mesenteric vessels end.
    """
    u = rng.uniform
    xs, ys, cx, cy, ai, bi = body.xs, body.ys, body.cx, body.cy, body.ai, body.bi
    xa, ya, _ = aorta
    core_lo, core_hi = core
    zlo, zhi = float(cv.axes[2][0]), float(cv.axes[2][-1])
    colon_r = u(17, 24)
    colon = [
        (xs + ai * u(0.55, 0.7), ys + u(10, 30), core_lo - 20),
        (xs + ai * u(0.5, 0.65), cy + u(-10, 20), neck_z - u(5, 25)),
        (cx + u(-10, 10), cy + bi - u(25, 40), neck_z - u(25, 60)),
        (xs - ai * u(0.55, 0.7), cy + u(0, 25), neck_z + u(10, 30)),
        (xs - ai * u(0.6, 0.75), ys + u(10, 30), core_lo - 20),
    ]
    colon_fill = T.STOOL if rng.random() < 0.6 else T.GAS
    bladder = lower_abdomen.paint_pelvic_organs(cv, outer, body)
    lower_abdomen.paint_colon(cv, outer, body, colon, colon_r, colon_fill)
    lower_abdomen.paint_ureters(cv, outer, body, organs.kidneys, bladder)
    for _ in range(int(rng.integers(18, 32))):
        start = (cx + u(-0.75, 0.55) * ai, u(ya + 15, cy + bi * 0.8), u(core_lo - 10, neck_z + 15))
        loop = random_walk(rng, start, int(rng.integers(6, 16)), 7.0, u(0.6, 0.85))
        cv.tube(loop, u(7, 12), T.BOWEL_WALL, loop_content(rng), wall_mm=u(2, 3.5), on=FAT)
    lower_abdomen.paint_small_bowel(cv, outer, body, core_lo + 10, zlo - 10)
    # Mesenteric vessels fanning out anteriorly and caudally from the SMA/SMV.
    for _ in range(int(rng.integers(10, 24))):
        start = (xa + u(0, 25), ya + u(15, 30), neck_z - u(10, 60))
        twig = random_walk(rng, start, int(rng.integers(4, 10)), 6.0, 0.8)
        kind = T.ARTERY if rng.random() < 0.5 else T.PORTAL_VEIN
        cv.tube(twig, u(1.2, 2.5), kind, None, on=FAT)
    # Fat stranding: thin vessels, lymphatics and septa everywhere in the visceral fat, which partial
    # volume turns into the -80..0 HU that a fatty pancreas shows too.
    for _ in range(int(rng.integers(40, 90))):
        start = (cx + u(-0.85, 0.85) * ai, u(ys, cy + bi * 0.9), u(core_lo, core_hi))
        strand = random_walk(rng, start, int(rng.integers(3, 8)), 6.0, 0.7)
        cv.tube(strand, u(0.6, 1.4), T.BOWEL_WALL if rng.random() < 0.5 else T.MUSCLE, None, on=FAT)
    # Lymph nodes: small soft-tissue ovoids in the mesentery and around the vessels.
    for _ in range(int(rng.integers(4, 14))):
        c = (xa + u(-40, 50), ya + u(0, 60), neck_z + u(-50, 20))
        cv.ellipsoid(c, (u(3, 7), u(3, 6), u(4, 9)), T.BOWEL_WALL, on=FAT)
    ileocaecal = np.array([xs + ai * outer.uniform(0.2, 0.35), ys + outer.uniform(40, 60), body.z_crest - 20])
    lower_abdomen.paint_mesentery(cv, outer, body, ((xa + 5, ya + 30, core_lo - 20), ileocaecal), core_lo, zlo)
    lower_abdomen.paint_fat_stranding(cv, outer, body, zlo, core_lo)
    lower_abdomen.paint_fat_stranding(cv, outer, body, core_hi, zhi)
    return ileocaecal


def paint_stomach_and_duodenum(
    cv: Canvas,
    rng: np.random.Generator,
    outer: np.random.Generator,
    body: Body,
    aorta: Aorta,
    dome: thorax.Dome,
    gland: Gland,
) -> None:
    """Stomach (food, fluid or collapsed, with an air-fluid level) anterior to the gland's body, its
    fundus under the diaphragm and the oesophagus; pylorus and the duodenal C-loop round the head."""
    u = rng.uniform
    xs, cy = body.xs, body.cy
    xa, ya, _ = aorta
    neck, head, uncinate, node_r = gland.neck, gland.head, gland.uncinate, gland.node_r
    stomach_c = np.array([xs - u(30, 55), cy + u(25, 45), u(30, 55)])
    stomach_r = np.array([u(38, 55), u(26, 36), u(35, 50)])
    stomach_c[1] = max(stomach_c[1], gland.body[1] + node_r[3] + stomach_r[1] * 0.7 + u(0, 6))  # anterior to body
    stomach_wall = u(3, 6)
    if cv.box(stomach_c - stomach_r, stomach_c + stomach_r) is not None:
        fill = [T.FOOD, T.BOWEL_FLUID, T.BOWEL_WALL][int(rng.integers(3))]
        stomach_on = (T.VISCERAL_FAT, T.LIVER, T.BOWEL_WALL, T.BOWEL_FLUID, T.GAS)
        box, inner = cv.hollow(stomach_c, stomach_r, stomach_wall, T.BOWEL_WALL, fill, on=stomach_on)
        level = stomach_c[1] + stomach_r[1] * u(-0.2, 0.9)  # air-fluid level: gas rises anteriorly (supine)
        cv.paint(box, inner & (cv.local(box)[1] > level), T.GAS)
        thorax.paint_fundus(cv, outer, dome, stomach_c, stomach_r, stomach_wall, fill)
    cardia = stomach_c + [stomach_r[0] * 0.3, -stomach_r[1] * 0.2, stomach_r[2] * 0.7]
    thorax.paint_oesophagus(cv, outer, aorta, cardia, float(cv.axes[2][-1]))
    pylorus = np.array([xs + u(5, 20), stomach_c[1] - u(0, 10), neck[2] + u(10, 22)])
    cv.tube([stomach_c + [stomach_r[0] * 0.5, 0, -10], pylorus], u(10, 14), T.BOWEL_WALL, loop_content(rng), on=FAT)
    d_r = u(9, 13)
    d2x = head[0] + node_r[1] + d_r + u(0, 4)
    duodenum = [
        pylorus,
        (d2x - 4, head[1] + u(0, 10), neck[2] + u(5, 15)),
        (d2x, head[1] + u(-5, 5), head[2] - u(0, 10)),
        (d2x - 5, ya + u(6, 14), uncinate[2] - u(15, 25)),
        (xa - u(0, 8), ya + u(14, 20), uncinate[2] - u(15, 25)),
        (xa - u(25, 35), ya + u(18, 28), gland.body[2] - u(10, 20)),
    ]
    cv.tube(duodenum, d_r, T.BOWEL_WALL, loop_content(rng), on=FAT + (T.BOWEL_WALL, T.BOWEL_FLUID, T.GAS))
