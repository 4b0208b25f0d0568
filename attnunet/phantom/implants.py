"""Metal in the body: hip prostheses, spinal fixation and surgical clips.

Real abdominal CT cohorts are mostly older patients, and many of their scans hold metal: a hip
prosthesis at the bottom of the field of view, pedicle screws and rods in the lumbar spine, clips
from an earlier operation near the liver hilum. Metal is far denser than bone (clipped at the top of
the HU range) and the scanner turns it into streaks across the slice (:func:`.appearance.metal_streaks`).
A model that never met either puts false positives beside it (one trained on phantoms without metal
marked a pubic bone beside a hip prosthesis as pancreas: docs/explanation/phantom.md). Geometry in world mm, RAS, as in
:mod:`.skeleton`; every case draws its implants from its own findings stream (:data:`.case.FINDINGS_STREAM`).
"""

from __future__ import annotations

import numpy as np

from attnunet.phantom.canvas import Canvas, Tissue
from attnunet.phantom.skeleton import DISC_PITCH, Body

T = Tissue
HIP_PROSTHESIS_PROBABILITY = 0.12  # per case (one side; a fifth of them both sides)
SPINAL_FIXATION_PROBABILITY = 0.06
CLIPS_PROBABILITY = 0.15


def paint_implants(cv: Canvas, rng: np.random.Generator, body: Body, hilum: np.ndarray) -> list[str]:
    """Paint a random set of implants (often none); returns their names.

    Args:
        body: the trunk's landmarks (femoral heads, lumbar spine).
        hilum: a point near the liver hilum / gallbladder fossa (mm), where clips lie.
    """
    painted = []
    if rng.random() < HIP_PROSTHESIS_PROBABILITY:
        sides = (1, -1) if rng.random() < 0.2 else (int(rng.choice((1, -1))),)
        for side in sides:
            paint_hip_prosthesis(cv, rng, body, side)
        painted.append("hip prosthesis")
    if rng.random() < SPINAL_FIXATION_PROBABILITY:
        paint_spinal_fixation(cv, rng, body)
        painted.append("spinal fixation")
    if rng.random() < CLIPS_PROBABILITY:
        paint_clips(cv, rng, hilum)
        painted.append("surgical clips")
    return painted


def paint_hip_prosthesis(cv: Canvas, rng: np.random.Generator, body: Body, side: int) -> None:
    """Total hip replacement on ``side`` (+1 right, -1 left): metal head in a polyethylene liner and a
    metal cup, and a stem down the femoral neck and shaft (which :mod:`.skeleton` painted as bone)."""
    u = rng.uniform
    hw, hy = body.hip
    head = np.array([body.xs + side * hw, body.ys + hy, body.z_hip])
    r = u(14, 18)  # 28-36 mm heads
    cup_box, cup = cv.ellipsoid(head, (r + u(6, 8),) * 3)
    if cup_box is not None:
        z = cv.local(cup_box)[2]
        cv.paint(cup_box, cup & (z >= head[2] - 0.3 * r), T.METAL)  # hemispherical shell, opening down
    cv.ellipsoid(head, (r + u(2, 4),) * 3, T.SUBCUTANEOUS_FAT)  # polyethylene liner (fat-like HU)
    cv.ellipsoid(head, (r,) * 3, T.METAL)
    stem = [head, head + [side * u(30, 36), -u(6, 12), -u(45, 55)], head + [side * u(24, 30), -u(4, 10), -u(150, 190)]]
    cv.capsule_tube(stem, np.array([u(6, 8), u(7, 9), u(4, 5)]), T.METAL)


def paint_spinal_fixation(cv: Canvas, rng: np.random.Generator, body: Body) -> None:
    """Posterior lumbar fusion: two rods behind the vertebral bodies over 2-4 levels, a pedicle screw
    from each rod into every vertebral body they span."""
    u = rng.uniform
    levels = int(rng.integers(2, 5))
    z_low = body.z_s1 + u(0, 40)
    zs = z_low + DISC_PITCH * np.arange(levels + 1) + DISC_PITCH / 2
    for side in (1, -1):
        x_rod = body.xs + side * u(18, 24)
        rod = np.array([[x_rod, float(body.spine_y(z)) - u(26, 32), z] for z in zs])
        cv.capsule_tube(rod, u(2.5, 3.2), T.METAL)
        for point in rod:
            target = np.array([body.xs + side * u(4, 9), float(body.spine_y(point[2])) + u(0, 8), point[2]])
            cv.capsule_tube([point, target], u(2.5, 3.2), T.METAL)


def paint_clips(cv: Canvas, rng: np.random.Generator, hilum: np.ndarray) -> None:
    """3-8 surgical clips (short metal bars of about 2 x 7 mm) scattered around ``hilum``."""
    u = rng.uniform
    for _ in range(int(rng.integers(3, 9))):
        centre = hilum + rng.normal(0, 12, size=3)
        direction = rng.normal(size=3)
        direction *= u(3, 4) / np.linalg.norm(direction)
        cv.capsule_tube([centre - direction, centre + direction], u(1.3, 1.8), T.METAL)
