"""The top of a real abdominal scan: heart above the diaphragm, gastric fundus, oesophagus.

World mm (RAS) as in :mod:`~.anatomy`; the liver dome, spleen, lung bases, ribs and sternum are
painted there and in :mod:`~.skeleton`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from attnunet.phantom.canvas import Canvas, Tissue, resample
from attnunet.phantom.skeleton import Body

T = Tissue
Dome = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x, y) mm -> height (mm) of the diaphragm's top
# Chambers as (centre offset, radii) in units of the heart's radii, and their blood.
CHAMBERS = (
    ((-0.3, -0.1, -0.15), (0.45, 0.45, 0.5), T.ARTERY),  # left ventricle
    ((0.3, 0.35, -0.1), (0.4, 0.35, 0.45), T.SYSTEMIC_VEIN),  # right ventricle
    ((0.5, -0.15, 0.25), (0.3, 0.35, 0.4), T.SYSTEMIC_VEIN),  # right atrium
    ((-0.05, -0.5, 0.3), (0.35, 0.25, 0.35), T.ARTERY),  # left atrium
)
LUNG_DEPTH_MM = 150.0  # lowest lung (posterior recesses) below the lower dome's apex


def paint_lungs(cv: Canvas, rng: np.random.Generator, body: Body) -> Dome:
    """Lungs above two diaphragm domes (paraboloids, the right one higher, deepest in the posterior
    costophrenic recesses, at most :data:`LUNG_DEPTH_MM` below the lower apex), under a thin
    diaphragm; the liver, spleen and fat above a dome give way (to fat in the strip beside and
    behind the spine). The mediastinum is lung until :func:`paint_mediastinum`, so that nothing
    painted into fat (bowel, stomach) grows into it. Returns the dome's height."""
    u = rng.uniform
    apex_r = u(95, 130)
    apex_l = apex_r - u(5, 25)
    k = u(0.006, 0.009)  # 1/mm: drop of the dome per squared mm from its apex
    ay = body.cy + body.bi * u(0, 0.25)
    half = body.ai + body.wall

    def dome(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        right = apex_r - k * ((x - body.xs - 0.45 * body.ai) ** 2 + (y - ay) ** 2)
        left = apex_l - k * ((x - body.xs + 0.45 * body.ai) ** 2 + (y - ay) ** 2)
        return np.maximum(right, left)

    box = cv.box(
        np.array([body.cx - half, body.cy - body.bi - body.wall, apex_l - LUNG_DEPTH_MM]),
        np.array([body.cx + half, body.cy + body.bi + body.wall, 1e4]),
    )
    if box is not None:
        x, y, z = cv.local(box)
        top = dome(x, y)
        under = (T.VISCERAL_FAT, T.LIVER, T.SPLEEN)
        cv.paint(box, (z <= top) & (z > top - u(3, 5)), T.MUSCLE, on=under)
        above, paraspinal = z > top, (np.abs(x - body.xs) < 28) & (y < body.ys + 25)
        cv.paint(box, above & paraspinal, T.VISCERAL_FAT, on=(T.LIVER, T.SPLEEN))
        cv.paint(box, above & ~paraspinal, T.LUNG, on=under)
    return dome


def paint_heart(
    cv: Canvas, rng: np.random.Generator, body: Body, dome: Dome, aorta: tuple[float, float, float]
) -> None:
    """Heart seated on the diaphragm (``dome``) left of the midline, in front of the descending aorta
    (``aorta``: x, y, radius in mm) and of the oesophagus, which runs at most 15 mm in front of the
    aorta (:func:`paint_oesophagus`), so the left atrium lies in front of both: pericardial fat,
    myocardium (muscle) and four blood pools (arterial left, venous right), all above the diaphragm.
    Its inferior wall lies on the dome under its centre, mostly 40-85 mm above the pancreas level:
    the scans that reach highest show it. Where the cavity in front of the aorta is shallow the
    heart is flattened (front to back radius down to 25 mm) and may meet the anterior wall."""
    u = rng.uniform
    xa, ya, ra = aorta
    r = np.array([u(50, 65), u(40, 50), u(45, 60)])
    back = ya + ra + 18
    r[1] = max(min(r[1], (body.front + 5 - back) / 2), 25)
    c = np.array([body.cx - u(10, 30), max(min(body.ys + u(55, 75), body.front - r[1] + 5), back + r[1]), 0.0])
    c[2] = float(dome(c[0], c[1])) - u(0, 5) + r[2]
    for offset, scale, tissue, on in (
        (0, r + 3, T.VISCERAL_FAT, (T.LUNG,)),
        (0, r, T.MUSCLE, (T.VISCERAL_FAT, T.LUNG)),
        *((np.array(o) * r, np.array(s) * r, blood, (T.MUSCLE,)) for o, s, blood in CHAMBERS),
    ):
        box, mask = cv.ellipsoid(c + offset, scale)
        if box is not None:
            x, y, z = cv.local(box)
            inside = ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1
            heart = mask & (z > dome(x, y)) & (inside if tissue != T.VISCERAL_FAT else True)
            cv.paint(box, heart, tissue, on=on)


def paint_mediastinum(cv: Canvas, body: Body, dome: Dome) -> None:
    """The mediastinum between the lungs: lung in front of the spine (within 35 mm of the midline)
    and above the diaphragm becomes fat again, once the organs that grow into fat are painted."""
    box = cv.box(np.array([body.xs - 35, body.ys, -1e4]), np.array([body.xs + 35, body.front, 1e4]))
    if box is not None:
        x, y, z = cv.local(box)
        cv.paint(box, (np.abs(x - body.xs) < 35) & (y > body.ys) & (z > dome(x, y)), T.VISCERAL_FAT, on=(T.LUNG,))


def paint_fundus(
    cv: Canvas,
    rng: np.random.Generator,
    dome: Dome,
    stomach_c: np.ndarray,
    stomach_r: np.ndarray,
    wall: float,
    fill: Tissue,
) -> None:
    """Gastric fundus: the stomach's dome under the left hemidiaphragm (``dome``), behind and above
    its body, its top at least 5 mm below the diaphragm's top above it."""
    u = rng.uniform
    c = np.asarray(stomach_c, float) + [-u(5, 15), -u(10, 25), stomach_r[2] * u(0.6, 0.85)]
    r = np.array([u(25, 35), u(22, 30), u(25, 35)])
    c[2] = min(c[2], float(dome(c[0], c[1])) - 5 - r[2])
    on = (T.VISCERAL_FAT, T.BOWEL_WALL, T.BOWEL_FLUID, T.GAS)
    cv.hollow(c, r, wall, T.BOWEL_WALL, fill, on=on)


def paint_oesophagus(
    cv: Canvas,
    rng: np.random.Generator,
    aorta: tuple[float, float, float],
    cardia: np.ndarray,
    z_top: float,
) -> None:
    """Oesophagus just in front of the descending aorta (``aorta``: x, y, radius in mm; at most
    15 mm in front of it, behind the heart) down through the hiatus, then forward to the ``cardia``."""
    u = rng.uniform
    xa, ya, ra = aorta
    top = (xa + u(-5, 10), ya + ra + u(2, 6), z_top + 20)
    hiatus = (xa + u(0, 15), ya + ra + u(2, 6), cardia[2] + u(15, 30))
    lumen = T.GAS if rng.random() < 0.4 else None
    # Straight pieces: a spline through the three would swing back into the aorta above the hiatus.
    path = np.vstack([resample([top, hiatus], 4.0)[0], resample([hiatus, cardia], 4.0)[0][1:]])
    cv.capsule_tube(path, u(6, 9), T.BOWEL_WALL, lumen, wall_mm=4.0, on=(T.VISCERAL_FAT, T.LUNG))
