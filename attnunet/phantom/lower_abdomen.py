"""The abdomen below the pancreas and the pelvis: what a real scan shows caudal to the gland.

A network that only ever saw the pancreas's neighbourhood fires on the look-alikes further down;
these are painted here, in world mm around the levels of :class:`~.skeleton.Body`: psoas muscles
down to the groin, aorta ending at L4 in the common, external and internal iliac arteries, IVC formed
from the iliac veins, ureters from the renal pelves along the psoas to the bladder, the colon from
caecum round to the sigmoid and rectum, abundant small-bowel loops (jejunum upper left, ileum
lower right, mostly collapsed), mesenteric vessels, fat stranding and lymph nodes, the urinary
bladder low in the pelvis and often a uterus behind it.
"""

from __future__ import annotations

import numpy as np

from attnunet.phantom.canvas import Canvas, Tissue, random_walk, resample
from attnunet.phantom.skeleton import Body

T = Tissue
Point = tuple[float, float, float] | np.ndarray  # world mm
FAT = (T.VISCERAL_FAT,)
LOOP_CONTENT = (T.BOWEL_WALL, T.BOWEL_FLUID, T.GAS)  # collapsed, fluid-filled, gas-filled


def paint_vessels(
    cv: Canvas,
    rng: np.random.Generator,
    body: Body,
    aorta: tuple[float, float, float],
    ivc: tuple[float, float, float, float],
) -> None:
    """Aorta down to its bifurcation, IVC down to the iliac confluence, and the iliac vessels.

    Args:
        aorta: ``(x, y, radius)``; ivc: ``(x, y, radius_x, radius_y)`` (mm).
    """
    u = rng.uniform
    (xa, ya, ra), (xi, yi, rxi, ryi) = aorta, ivc
    z = cv.axes[2][:, None]
    z_conf = body.z_bif - u(5, 20)
    cv.column(np.broadcast_to([xa, ya], (len(z), 2)), [ra, ra] * (z >= body.z_bif), T.ARTERY)
    cv.column(np.broadcast_to([xi, yi], (len(z), 2)), [rxi, ryi] * (z >= z_conf), T.SYSTEMIC_VEIN)
    hw, hy = body.hip
    on = (T.VISCERAL_FAT, T.MUSCLE)
    for side in (1, -1):
        split = np.array([body.xs + side * u(30, 42), body.ys + u(22, 32), body.z_s1 - u(5, 20)])
        external = np.array([body.xs + side * (hw - u(5, 15)), body.ys + hy + u(5, 15), body.z_hip + u(10, 25)])
        femoral = np.array([body.xs + side * (hw - u(0, 10)), body.ys + hy + u(25, 35), body.z_hip - 40])
        external[1], femoral[1] = min(external[1], body.front - 15), min(femoral[1], body.front - 8)
        internal = (body.xs + side * u(40, 55), body.spine_y(body.z_s1 - 50) + u(-5, 10), body.z_s1 - u(40, 60))
        nodes = [(xa, ya, body.z_bif + 3), split, external, femoral]
        path, radius = resample(nodes, 5.0, [0.6 * ra, 0.6 * ra, 0.5 * ra, 0.5 * ra])
        cv.capsule_tube(path, radius, T.ARTERY, on=on)
        cv.capsule_tube(resample([split, internal], 5.0)[0], 0.4 * ra, T.ARTERY, on=on)
        vein = [
            (xi, yi, z_conf + 3),
            (body.xs + side * u(25, 38), body.ys + u(10, 20), body.z_s1 - u(10, 25)),
            external + [-side * u(9, 14), -u(2, 6), -5],
            femoral + [-side * u(10, 15), -3, 0],
        ]
        path, radius = resample(vein, 5.0, [0.8 * rxi, 0.7 * rxi, 0.6 * rxi, 0.6 * rxi])
        cv.capsule_tube(path, radius, T.SYSTEMIC_VEIN, on=on)


def paint_psoas(
    cv: Canvas,
    rng: np.random.Generator,
    body: Body,
    top: float,
    upper: list[tuple[tuple[float, float], tuple[float, float]]],
) -> None:
    """Psoas muscles beside the lumbar spine from height ``top``, thickening caudally, over the pelvic
    brim to the groin. ``upper``: per side (right, left) the offsets from the vertebral body centre
    (x, y; mm) at the top and at L4, drawn from the core stream (:func:`~.anatomy.paint_trunk`)."""
    u = rng.uniform
    full = 6 + 18 * np.clip((top - body.z_bif) / 110, 0, 1)
    hw, hy = body.hip
    for side, ((x0, y0), (x1, y1)) in zip((1, -1), upper):
        nodes = [
            (body.xs + side * x0, body.ys + y0, top),
            (body.xs + side * x1, body.ys + y1, body.z_bif),
            (body.xs + side * u(48, 58), body.ys + u(18, 30), body.z_s1 - 15),
            (body.xs + side * (hw - u(0, 10)), min(body.ys + hy + u(20, 30), body.front - 12), body.z_hip - 25),
        ]
        path, radius = resample(nodes, 6.0, [6, full, full * u(0.8, 1.0), full * 0.7])
        cv.capsule_tube(path, radius, T.MUSCLE, on=FAT)


def paint_pelvic_organs(cv: Canvas, rng: np.random.Generator, body: Body) -> tuple[np.ndarray, np.ndarray]:
    """Urinary bladder (urine ~0-15 HU in a thin muscular wall) behind the pubis, and in half the
    cases a uterus above and behind it. Returns the bladder's centre and radii."""
    u = rng.uniform
    radii = np.array([u(30, 50), u(25, 40), u(25, 45)])
    room = body.front - body.spine_y(body.z_hip) - 40  # between the sacrum (with the rectum) and the front
    radii[1] = min(radii[1], max(room / 2 - 5, 15))
    centre = np.array([body.cx + u(-10, 10), body.front - radii[1] - u(3, 10), body.z_hip + u(-5, 35)])
    cv.hollow(centre, radii, u(2, 4), T.MUSCLE, T.BOWEL_FLUID, on=FAT)
    if rng.random() < 0.5:
        uterus = centre + [u(-15, 15), -radii[1] - u(0, 15), radii[2] * u(0.6, 1.0)]
        cv.ellipsoid(uterus, (u(25, 40), u(18, 28), u(30, 45)), T.BOWEL_WALL, on=FAT)
    return centre, radii


def paint_ureters(
    cv: Canvas,
    rng: np.random.Generator,
    body: Body,
    kidneys: dict[int, tuple[np.ndarray, np.ndarray]],
    bladder: tuple[np.ndarray, np.ndarray],
) -> None:
    """Thin soft-tissue tubes from each renal hilum along the psoas, over the iliac vessels at the
    pelvic brim, down the pelvic side wall into the back of the bladder. ``kidneys``: side (1 right,
    -1 left) -> centre and radii; ``bladder``: centre and radii (mm)."""
    u = rng.uniform
    b_c, b_r = bladder
    for side, (c, rk) in kidneys.items():
        nodes = [
            c + [-side * (rk[0] - 6), 6, -8],
            (body.xs + side * u(32, 42), body.ys + u(20, 30), body.z_bif + u(-5, 15)),
            (body.xs + side * u(40, 50), body.ys + u(28, 40), body.z_s1 - u(10, 25)),
            (body.xs + side * u(45, 60), body.spine_y(body.z_hip) + u(20, 35), body.z_hip + u(20, 40)),
            b_c + [side * u(15, 25), -0.7 * b_r[1], -0.4 * b_r[2]],
        ]
        cv.capsule_tube(resample(nodes, 6.0)[0], u(2, 3), T.BOWEL_WALL, on=FAT)


def paint_colon(
    cv: Canvas, rng: np.random.Generator, body: Body, middle: list[Point], radius: float, content: Tissue
) -> None:
    """The colon: caecum in the right iliac fossa, then ``middle`` (the colon around the core field of
    view, laid out by the core stream: ascending colon, hepatic flexure, transverse colon, splenic
    flexure, descending colon; its ``radius`` and ``content``), on to the left iliac fossa, the
    sigmoid loop and the rectum in front of the sacrum; caecum, sigmoid and rectum draw their own
    calibre and content."""
    u = rng.uniform
    xs, ys, ai = body.xs, body.ys, body.ai
    sig_y = min(ys + u(40, 70), body.front - radius - 5)
    z_rectum = body.z_s1 - u(40, 60)
    r_rect = radius * u(0.6, 0.9)

    def rectal(z: float) -> tuple[float, float, float]:
        return xs + u(-8, 8), float(body.spine_y(z)) + 15 + r_rect + u(3, 10), z

    z_core = middle[0][2]
    nodes = [
        (xs + ai * u(0.4, 0.55), ys + u(25, 50), min(body.z_crest - u(20, 55), z_core - 45)),
        *middle,
        (xs - ai * u(0.55, 0.7), ys + u(15, 35), min(body.z_crest - u(10, 30), middle[-1][2] - 45)),
        (xs - ai * u(0.25, 0.45), sig_y, body.z_s1 - u(10, 40)),
        (xs + ai * u(-0.05, 0.2), sig_y - u(0, 20), body.z_s1 - u(20, 50)),
        *(rectal(z_rectum - dz) for dz in (0, 35, 70, 110)),
    ]
    scale = [u(1.0, 1.2), 1, 1, 1, 1, 1, u(0.7, 0.9), u(0.65, 0.85), u(0.65, 0.85), *[r_rect / radius] * 4]
    own = [_colon_content(rng)] + [content] * 5 + [_colon_content(rng)] * 3 + [_colon_content(rng)] * 4
    path, r, section = resample(np.array(nodes), 8.0, np.array(scale) * radius, np.arange(len(nodes)))
    lumen = np.array(own, dtype=np.uint8)[np.rint(section[:-1]).astype(int)]
    cv.capsule_tube(path, r, T.BOWEL_WALL, lumen, on=FAT)


def _colon_content(rng: np.random.Generator) -> Tissue:
    """What one stretch of colon holds: stool mostly, else gas, fluid or nothing (collapsed)."""
    return (T.STOOL, T.GAS, T.BOWEL_FLUID, T.BOWEL_WALL)[int(rng.choice(4, p=[0.5, 0.25, 0.1, 0.15]))]


def paint_small_bowel(cv: Canvas, rng: np.random.Generator, body: Body, z_top: float, z_floor: float) -> None:
    """Small-bowel loops between ``z_floor`` and ``z_top``: ileum packing the lower abdomen (shifted
    to the right lower quadrant) and the pelvis above the bladder; most collapsed (soft tissue, the
    pancreas's HU), some fluid or gas filled. Painted only into fat."""
    u = rng.uniform
    z_floor = max(z_floor, body.z_hip + 5)
    if z_top <= z_floor:
        return
    for _ in range(int(u(26, 40) * (z_top - z_floor) / 110)):
        z = u(z_floor, z_top)
        half = 0.45 if z < body.z_s1 - 10 else 0.75  # the true pelvis is narrower
        ileum = float(np.clip((body.z_bif + 40 - z) / 100, 0, 1))
        x = body.cx + body.ai * (u(-half, half) + 0.15 * ileum)
        y = u(body.ys + 25, max(body.cy + body.bi * 0.8, body.ys + 30))
        loop = random_walk(rng, (x, y, z), int(rng.integers(6, 16)), 7.0, u(0.6, 0.85))
        fill = LOOP_CONTENT[int(rng.choice(3, p=[0.55, 0.33, 0.12]))]
        cv.capsule_tube(loop, u(7, 12), T.BOWEL_WALL, fill, wall_mm=u(2, 3.5), on=FAT)


def paint_mesentery(
    cv: Canvas, rng: np.random.Generator, body: Body, root: tuple[Point, Point], z_top: float, z_floor: float
) -> None:
    """Below the pancreas level: mesenteric vessels fanning out from the root (SMA/SMV line from
    ``root[0]`` to ``root[1]``), mesenteric and iliac lymph nodes."""
    u = rng.uniform
    length = z_top - max(z_floor, body.z_hip - 20)
    if length <= 0:
        return
    a, b = np.asarray(root, float)
    for _ in range(int(u(10, 24) * length / 80)):
        start = a + (b - a) * u(0, 1) + [u(-10, 25), u(0, 20), 0]
        twig = random_walk(rng, start, int(rng.integers(4, 10)), 6.0, 0.8)
        cv.capsule_tube(twig, u(1.2, 2.5), T.ARTERY if rng.random() < 0.5 else T.PORTAL_VEIN, on=FAT)
    for _ in range(int(rng.integers(3, 10))):
        c = a + (b - a) * u(0, 1) + [u(-30, 40), u(0, 50), 0]
        cv.ellipsoid(c, (u(3, 7), u(3, 6), u(4, 9)), T.BOWEL_WALL, on=FAT)
    for _ in range(int(rng.integers(2, 8))):  # along the iliac vessels
        side = 1 if rng.random() < 0.5 else -1
        z = u(body.z_hip + 10, body.z_bif)
        c = (body.xs + side * u(25, 60), body.ys + u(15, 45), z)
        cv.ellipsoid(c, (u(3, 6), u(3, 6), u(4, 8)), T.BOWEL_WALL, on=FAT)


def paint_fat_stranding(cv: Canvas, rng: np.random.Generator, body: Body, z_lo: float, z_hi: float) -> None:
    """Thin vessels, lymphatics and septa in the visceral fat between ``z_lo`` and ``z_hi``, at the
    density the core field of view has (:func:`~.upper_abdomen.paint_bowel`), so the stranding does not
    stop at its edges (partial volume: -80..0 HU, as a fatty gland)."""
    u = rng.uniform
    for _ in range(int(u(40, 90) * max(z_hi - z_lo, 0) / 140)):
        start = (body.cx + u(-0.85, 0.85) * body.ai, u(body.ys, body.cy + body.bi * 0.9), u(z_lo, z_hi))
        strand = random_walk(rng, start, int(rng.integers(3, 8)), 6.0, 0.7)
        cv.capsule_tube(strand, u(0.6, 1.4), T.BOWEL_WALL if rng.random() < 0.5 else T.MUSCLE, on=FAT)
