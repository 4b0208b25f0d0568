"""The top of a real abdominal scan: heart above the diaphragm, gastric fundus, oesophagus.

World mm (RAS) as in :mod:`~.anatomy`; the liver dome, spleen, lung bases, ribs and sternum are
painted there and in :mod:`~.skeleton`.
"""

from __future__ import annotations

import numpy as np

from attnunet.data.synthetic.canvas import Canvas, Tissue, resample
from attnunet.data.synthetic.skeleton import Body

T = Tissue
# Chambers as (centre offset, radii) in units of the heart's radii, and their blood.
CHAMBERS = (
    ((-0.3, -0.1, -0.15), (0.45, 0.45, 0.5), T.ARTERY),  # left ventricle
    ((0.3, 0.35, -0.1), (0.4, 0.35, 0.45), T.SYSTEMIC_VEIN),  # right ventricle
    ((0.5, -0.15, 0.25), (0.3, 0.35, 0.4), T.SYSTEMIC_VEIN),  # right atrium
    ((-0.05, -0.5, 0.3), (0.35, 0.25, 0.35), T.ARTERY),  # left atrium
)


def paint_lungs(cv: Canvas, rng: np.random.Generator, body: Body) -> float:
    """Lungs above two diaphragm domes (paraboloids, the right one higher, deepest in the posterior
    costophrenic recesses), under a thin diaphragm; the liver, spleen and fat above a dome give way.
    Returns the height (mm) of the central tendon between the domes, where the heart sits."""
    u = rng.uniform
    apex_r = u(95, 130)
    apex_l = apex_r - u(5, 25)
    k = u(0.006, 0.009)  # 1/mm: drop of the dome per squared mm from its apex
    ay = body.cy + body.bi * u(0, 0.25)
    half = body.ai + body.wall
    box = cv.box(
        np.array([body.cx - half, body.cy - body.bi - body.wall, apex_l - k * (2 * half) ** 2]),
        np.array([body.cx + half, body.cy + body.bi + body.wall, 1e4]),
    )
    if box is not None:
        x, y, z = cv.local(box)
        right = apex_r - k * ((x - body.xs - 0.45 * body.ai) ** 2 + (y - ay) ** 2)
        left = apex_l - k * ((x - body.xs + 0.45 * body.ai) ** 2 + (y - ay) ** 2)
        dome = np.maximum(right, left)
        under = (T.VISCERAL_FAT, T.LIVER, T.SPLEEN)
        cv.paint(box, (z <= dome) & (z > dome - u(3, 5)), T.MUSCLE, on=under)
        mediastinum = (np.abs(x - body.xs) < 28) & (y < body.ys + 25)  # behind and beside the spine
        cv.paint(box, (z > dome) & ~mediastinum, T.LUNG, on=under)
    return min(apex_r, apex_l) - u(5, 15)


def paint_heart(cv: Canvas, rng: np.random.Generator, body: Body, tendon: float) -> None:
    """Heart on the diaphragm's central tendon (height ``tendon``), left of the midline and in front
    of the spine: pericardial fat, myocardium (muscle) and four blood pools (arterial left, venous
    right). Its inferior wall lies 80-125 mm above the pancreas: the scans that reach highest show it."""
    u = rng.uniform
    r = np.array([u(50, 65), u(40, 50), u(45, 60)])
    c = np.array([body.cx - u(10, 30), min(body.ys + u(55, 75), body.front - r[1] + 5), tendon + r[2] * u(0.8, 0.95)])
    cv.ellipsoid(c, r + 3, T.VISCERAL_FAT, on=(T.LUNG, T.LIVER))
    cv.ellipsoid(c, r, T.MUSCLE, on=(T.VISCERAL_FAT, T.LUNG, T.LIVER))
    for offset, scale, blood in CHAMBERS:
        cv.ellipsoid(c + np.array(offset) * r, np.array(scale) * r, blood, on=(T.MUSCLE,))


def paint_fundus(cv: Canvas, rng: np.random.Generator, stomach_c, stomach_r, wall: float, fill: Tissue) -> None:
    """Gastric fundus: the stomach's dome under the left hemidiaphragm, behind and above its body."""
    u = rng.uniform
    c = np.asarray(stomach_c, float) + [-u(5, 15), -u(10, 25), stomach_r[2] * u(0.6, 0.85)]
    on = (T.VISCERAL_FAT, T.LUNG, T.BOWEL_WALL, T.BOWEL_FLUID, T.GAS)
    cv.hollow(c, (u(25, 35), u(22, 30), u(25, 35)), wall, T.BOWEL_WALL, fill, on=on)


def paint_oesophagus(cv: Canvas, rng: np.random.Generator, aorta, cardia, z_top: float) -> None:
    """Oesophagus in front of the descending aorta down through the hiatus to the cardia."""
    u = rng.uniform
    xa, ya, ra = aorta
    top = (xa + u(-5, 10), ya + ra + u(4, 10), z_top + 20)
    hiatus = (xa + u(0, 15), ya + ra + u(8, 15), cardia[2] + u(15, 30))
    lumen = T.GAS if rng.random() < 0.4 else None
    path = resample([top, hiatus, cardia], 4.0)[0]
    cv.capsule_tube(path, u(6, 9), T.BOWEL_WALL, lumen, wall_mm=4.0, on=(T.VISCERAL_FAT, T.LUNG))
