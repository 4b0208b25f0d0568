"""The trunk's frame: vertebral levels, spine and sacrum, ribs, sternum and the bony pelvis.

World millimetres, RAS (+x patient right, +y anterior, +z superior), the pancreas neck near z = 0
at the level of L1/L2. Real scans run from the lung bases or heart down to the pelvis, so the
skeleton spans the whole field of view: lumbar vertebrae continuing into the sacrum (tilting
backwards), ribs curving down around the body wall from the thoracic vertebrae, the sternum in
front, and from L4/L5 down the iliac wings (cortex and marrow, iliacus inside and gluteal muscles
outside), the acetabula, femoral heads and shafts, pubic and ischial rami.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnunet.phantom.canvas import Canvas, Tissue, resample

T = Tissue
RIB_ON = (T.MUSCLE, T.VISCERAL_FAT, T.SUBCUTANEOUS_FAT)
DISC_PITCH = 35.0  # mm from one intervertebral disc to the next (one vertebral level)


@dataclass
class Spine:
    """Sizes (mm) of the vertebral column and back muscles, drawn from the core stream."""

    back: list[tuple[float, float, float, float]]  # per side (right, left): x, y offsets (behind), radii
    cortex: tuple[float, float]  # vertebral body radii (x, y)
    marrow: tuple[float, float]
    posterior: tuple[float, float]  # posterior elements, centred 30 mm behind the body
    canal: tuple[float, float]
    discs: dict[float, float]  # height of each disc of the core field of view -> its half-thickness


def draw_spine(rng: np.random.Generator, zlo: float, zhi: float) -> Spine:
    """Spine sizes and the discs between ``zlo`` and ``zhi`` (mm), from the core stream ``rng`` in a
    fixed order of draws (:func:`~.anatomy.paint_trunk` passes the core field of view)."""
    u = rng.uniform
    back = [(u(30, 38), u(38, 45), u(24, 30), u(20, 26)) for _ in (1, -1)]
    cortex, marrow = (u(19, 23), u(16, 19)), (u(15, 18), u(12, 15))
    posterior, canal = (u(7, 10), u(16, 22)), (u(6, 8), u(6, 8))
    disc0 = u(0, 35)
    discs = {float(z): u(3, 5) for z in np.arange(zlo - DISC_PITCH + disc0, zhi + DISC_PITCH, DISC_PITCH)}
    return Spine(back, cortex, marrow, posterior, canal, discs)


@dataclass
class Body:
    """Landmarks of one trunk (mm): body wall, cavity, lumbar spine and vertebral levels."""

    cx: float  # centre of the body's elliptic cross-section
    cy: float
    ai: float  # semi-axes of the cavity (inner edge of the muscle wall)
    bi: float
    wall: float  # muscle wall thickness
    xs: float  # lumbar vertebral body centre
    ys: float
    z_s1: float  # L5/S1 disc (sacral promontory)
    z_bif: float  # aortic bifurcation (L4)
    z_crest: float  # top of the iliac crests
    z_hip: float  # centre of the femoral heads
    hip: tuple[float, float]  # femoral head centre relative to the spine: lateral offset, anterior offset
    tilt: float  # how far behind the lumbar line the sacrum's tip lies
    sacrum_len: float

    @property
    def front(self) -> float:
        """y of the cavity's anterior edge."""
        return self.cy + self.bi

    def spine_y(self, z) -> np.ndarray:
        """y of the vertebral body centre at height ``z``: straight lumbar spine, sacrum tilting back."""
        q = np.clip((self.z_s1 - np.asarray(z, float)) / self.sacrum_len, 0, None)
        return self.ys - self.tilt * q**1.6


def draw_body(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    ai: float,
    bi: float,
    wall: float,
    xs: float,
    ys: float,
    spine: Spine,
) -> Body:
    """Vertebral levels and pelvis size of one trunk, given its wall and lumbar spine; L5/S1 is the
    disc of ``spine``'s sequence 125-160 mm below the pancreas level."""
    u = rng.uniform
    first = min(spine.discs)
    z_s1 = first + DISC_PITCH * np.ceil((-160 - first) / DISC_PITCH)
    z_bif = z_s1 + u(45, 60)
    front_room = cy + bi - ys
    hip = (float(np.clip(ai * u(0.55, 0.65), 65, 100)), float(min(u(35, 55), 0.45 * front_room)))
    return Body(
        cx, cy, ai, bi, wall, xs, ys, z_s1=float(z_s1), z_bif=z_bif, z_crest=z_bif - u(0, 15),
        z_hip=z_s1 - u(75, 95), hip=hip, tilt=u(20, 35), sacrum_len=u(105, 125),
    )  # fmt: skip


def paint_spine(cv: Canvas, rng: np.random.Generator, body: Body, spine: Spine, zhi: float) -> None:
    """Back muscles, vertebral column (cortex, marrow, posterior elements, canal, discs) over the
    whole z range; below L5 the column becomes the sacrum: tilting back, tapering, with its alae."""
    u = rng.uniform
    xs, far = body.xs, 1e4
    for side, (dx, dy, rx, ry) in zip((1, -1), spine.back):
        cv.ellipsoid((xs + side * dx, body.ys - dy, 0), (rx, ry, far), T.MUSCLE)
    z = cv.axes[2].astype(float)
    y = body.spine_y(z)
    q = np.clip((body.z_s1 - z) / body.sacrum_len, 0, None)  # 0 above S1, 1 at the sacrum's end
    # Sacral taper, then the coccyx, whose tip lies level with the top of the pubic symphysis.
    sacral = np.where(z < body.z_hip - 30, 0.0, np.maximum(1 - q * [[0.55], [0.45]], 0.3)).T  # (Z, 2)
    centre = np.stack([np.full_like(z, xs), y], 1)
    body_r = np.array(spine.cortex)
    outer, inner = body_r * sacral, np.array(spine.marrow) * sacral
    ala_q = (body.z_s1 - z) / (0.55 * body.sacrum_len)
    ala = np.where(((ala_q > 0.03) & (ala_q < 1))[:, None], [u(44, 52), body_r[1] * 0.8], 0.0)
    ala = ala * (1 - 0.6 * np.clip(ala_q, 0, 1) ** 1.5)[:, None]
    ala_centre = centre - [0, 6]
    cv.column(centre, outer, T.BONE_CORTEX)
    cv.column(ala_centre, ala, T.BONE_CORTEX)
    cv.column(centre, inner, T.BONE_MARROW)
    cv.column(ala_centre, ala - 3.5, T.BONE_MARROW, on=(T.BONE_CORTEX,))
    back = np.where(q > 1, 0.0, 1 - 0.7 * np.clip(q, 0, 1))[:, None]  # posterior elements, sacral crest
    cv.column(centre - [0, 30], np.array(spine.posterior) * back, T.BONE_CORTEX)
    canal = np.where(q < 0.6, 1 - q / 0.6, 0.0)[:, None]
    cv.column(centre - [0, 24], np.array(spine.canal) * canal, T.CSF)
    # Intervertebral discs (soft tissue across the body) from L5/S1 up, the sacrum being fused, and
    # the gaps between the spinous processes (interspinous ligaments) a third of a level below them.
    known = np.array(sorted(spine.discs))
    for zd in np.arange(body.z_s1, zhi + DISC_PITCH, DISC_PITCH):
        near = np.abs(known - zd) < 1e-3
        half = spine.discs[float(known[near][0])] if near.any() else u(3, 5)
        cv.ellipsoid((xs, body.ys, zd), (22, 19, half), T.MUSCLE, on=(T.BONE_MARROW, T.BONE_CORTEX))
        cv.ellipsoid((xs, body.ys - 48, zd - 0.35 * DISC_PITCH), (12, 14, u(3, 5)), T.MUSCLE, on=(T.BONE_CORTEX,))


def paint_ribs(cv: Canvas, rng: np.random.Generator, body: Body, zlo: float, zhi: float) -> None:
    """Ribs from T12 up: from the transverse process round the body wall, falling anteriorly; the
    lowest are short (floating), the higher ones reach the front; the sternum in the upper chest."""
    u = rng.uniform
    reach = (u(0.9, 1.3), u(1.4, 1.8), u(2.0, 2.3))
    phi0 = float(np.arcsin(np.clip(70 / body.ai, 0.3, 0.9)))
    for k in range(12):
        z0 = body.z_s1 + (5.5 + k) * DISC_PITCH  # T12 body, T11, ...
        if z0 - 110 > zhi:
            break
        end, drop, radius = (reach[k] if k < 3 else u(2.2, 2.5)), u(55, 85), u(4, 5.5)
        if z0 + 10 < zlo:
            continue
        for side in (1, -1):
            phi = np.linspace(phi0, end, 12)
            arc = np.stack(
                [
                    body.cx + side * (body.ai + 0.5 * body.wall) * np.sin(phi),
                    body.cy - (body.bi + 0.5 * body.wall) * np.cos(phi),
                    z0 - 8 - drop * (phi - phi0) / (np.pi - phi0),
                ],
                1,
            )
            head = [(body.xs + side * 16, body.ys - 8, z0 + 3), (body.xs + side * 38, body.ys - 24, z0)]
            path = resample(np.vstack([head, arc]), 8.0)[0]
            cv.capsule_tube(path, radius, T.BONE_CORTEX, T.BONE_MARROW, wall_mm=u(1.2, 2.0), on=RIB_ON)
    z_xiphoid = u(60, 100)
    z = cv.axes[2]
    on = (z >= z_xiphoid)[:, None]
    centre = np.stack([np.full(z.shape, body.cx), np.full(z.shape, body.front + 0.45 * body.wall)], 1)
    radii = np.array([u(12, 16), u(4.5, 6)])
    cv.column(centre, radii * on, T.BONE_CORTEX, on=RIB_ON)
    cv.column(centre, (radii - 1.5) * on, T.BONE_MARROW, on=(T.BONE_CORTEX,))


def paint_pelvis(cv: Canvas, rng: np.random.Generator, body: Body) -> None:
    """Iliac wings with iliacus and gluteal muscles, acetabula, femoral heads and necks, pubic and
    ischial rami, and the thigh muscles round the hips."""
    for side in (1, -1):
        _ilium(cv, rng, body, side)
        _hip(cv, rng, body, side)


def _ilium(cv: Canvas, rng: np.random.Generator, body: Body, side: int) -> None:
    """One iliac wing: in each axial slice a band along an elliptic arc (concave towards the pelvic
    cavity) from the sacroiliac joint to the anterior superior spine; from the crest down the arc
    shrinks, thickens and turns into the acetabular roof around the femoral head."""
    u = rng.uniform
    hw, hy = body.hip
    lateral = min(u(115, 135), 0.9 * body.ai + side * (body.cx - body.xs))
    w_t = u(5, 15)
    a_t = lateral - w_t
    b_t = min(u(55, 75), max(body.front - body.ys - 10, 30))
    post = -np.arccos(np.clip((u(40, 50) - w_t) / a_t, -1, 1))
    # Per-level parameters: arc centre (x', y'), semi-axes, angle range, thickness (mm, radians).
    top = np.array([w_t, u(10, 25), a_t, b_t, post, np.radians(u(25, 40)), u(6, 10)])
    a_b, th_h = u(35, 45), np.radians(u(-10, 10))
    b_b = a_b * u(0.9, 1.1)
    low = [hw - a_b * np.cos(th_h), hy - b_b * np.sin(th_h), a_b, b_b, th_h - np.radians(u(50, 70))]
    bottom = np.array([*low, th_h + np.radians(u(20, 35)), u(25, 35)])
    cortex, iliacus = u(1.5, 2.5), u(10, 18)
    span = body.z_crest - body.z_hip
    x0 = body.xs + side * (lateral + 60)
    box = cv.box(
        np.array([min(body.xs, x0), body.ys - 90, body.z_hip]),
        np.array([max(body.xs, x0), body.ys + max(hy, top[1] + b_t) + 70, body.z_crest]),
    )
    if box is None:
        return
    x, y, z = cv.local(box)
    xp, yp = side * (x - body.xs), y - body.ys
    e = np.clip((body.z_crest - z.ravel()) / span, 0, 1) ** 1.5
    params = (top[:, None] + (bottom - top)[:, None] * e).astype(np.float32)
    w, y0, a, b, lo, hi, t = (p[None, None, :] for p in params)
    dx, dy = xp - w, yp - y0
    rho = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
    d = np.sqrt(dx**2 + dy**2) * (1 - 1 / np.maximum(rho, 1e-3))  # radial offset from the arc, + outside
    q = (np.arctan2(dy / b, dx / a) - (lo + hi) / 2) / ((hi - lo) / 2)  # -1..1 along the arc
    below_crest = z <= body.z_crest - 15 * q**2
    bone = (np.abs(d) <= t / 2) & (np.abs(q) <= 1) & below_crest
    marrow = (np.abs(d) <= t / 2 - cortex) & (np.abs(q) <= 1 - 2 * cortex / (a * (hi - lo))) & bone
    deep = below_crest & (z <= body.z_crest - 20)
    cv.paint(box, bone, T.BONE_CORTEX, on=(T.VISCERAL_FAT, T.MUSCLE))
    cv.paint(box, marrow, T.BONE_MARROW, on=(T.BONE_CORTEX,))
    cv.paint(box, (d > t / 2) & (q >= -1.8) & (q <= 0.6) & deep, T.MUSCLE, on=(T.VISCERAL_FAT,))  # gluteal
    inside = (d < -t / 2) & (d >= -t / 2 - iliacus) & (q >= -0.6) & (q <= 1)
    cv.paint(box, inside & deep, T.MUSCLE, on=(T.VISCERAL_FAT,))  # iliacus


def _hip(cv: Canvas, rng: np.random.Generator, body: Body, side: int) -> None:
    """Acetabulum, femoral head and neck, greater trochanter and shaft, pubic and ischial rami, thigh
    muscles."""
    u = rng.uniform
    hw, hy = body.hip
    head = np.array([body.xs + side * hw, body.ys + hy, body.z_hip])
    r = u(21, 25)
    bone_on = (T.VISCERAL_FAT, T.MUSCLE)
    cv.ellipsoid(head + [side * u(15, 25), -u(0, 10), -u(30, 50)], (u(45, 60), u(50, 65), u(50, 70)), T.MUSCLE, bone_on)
    cv.ellipsoid(head + [-side * 5, 0, 6], (r + u(8, 12), r + u(7, 10), r + u(9, 13)), T.BONE_CORTEX, bone_on)
    cv.ellipsoid(head + [-side * 5, 0, 6], (r + 6, r + 5, r + 7), T.BONE_MARROW, (T.BONE_CORTEX,))
    trochanter = head + [side * u(40, 50), -u(5, 15), -u(35, 45)]
    pubis = (body.xs + side * u(4, 8), body.front - u(10, 20), body.z_hip - u(20, 35))
    ischium = (body.xs + side * (hw - 25), head[1] - u(30, 45), body.z_hip - u(40, 55))
    for a, b_, rr in (
        (head + [-side * 15, 10, -10], pubis, u(9, 12)),
        (head + [-side * 10, -15, -15], ischium, u(12, 15)),
        (head, trochanter, u(13, 16)),
    ):
        cv.capsule_tube([a, b_], rr, T.BONE_CORTEX, T.BONE_MARROW, wall_mm=2.5, on=bone_on + (T.BONE_MARROW,))
    cv.ellipsoid(trochanter, (u(16, 20), u(18, 24), u(18, 24)), T.BONE_CORTEX, bone_on)
    cv.ellipsoid(trochanter, (14, 16, 16), T.BONE_MARROW, (T.BONE_CORTEX,))
    shaft = [trochanter + [-side * 8, 0, -10], trochanter + [-side * u(25, 35), u(0, 10), -250]]
    cv.capsule_tube(shaft, u(12, 15), T.BONE_CORTEX, T.BONE_MARROW, wall_mm=u(4, 6), on=bone_on)  # femur
    cv.ellipsoid(head, (r + 1.5,) * 3, T.MUSCLE)  # joint space and cartilage
    cv.ellipsoid(head, (r,) * 3, T.BONE_CORTEX)
    cv.ellipsoid(head, (r - 2.5,) * 3, T.BONE_MARROW)
