"""The pancreas and the vessels that border it.

World mm (RAS) as in :mod:`~.anatomy`. The gland is one lobulated tube uncinate -> head -> neck ->
body -> tail: the head in the duodenal C-loop right of the superior mesenteric vein (SMV), the neck
anterior to the SMV/portal confluence, the body anterior to the aorta and superior mesenteric
artery (SMA), the tail at the splenic hilum anterior to the left kidney; a part of its volume is
interlobular fat (fatty lobulation). The splenic vein runs along its posterior border, the splenic
artery along its upper border, the SMV and portal vein behind the neck, the SMA with its fat collar
left of the SMV, the left renal vein between aorta and SMA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnunet.phantom.canvas import Canvas, Tissue, densify, resample, smooth

T = Tissue
Aorta = tuple[float, float, float]  # x, y, radius (mm)
Kidneys = dict[int, tuple[np.ndarray, np.ndarray]]  # side (1 right, -1 left) -> centre, radii (mm)
FAT = (T.VISCERAL_FAT,)
LESION_PROBABILITY = 0.7  # of a case with lesions asked for


@dataclass
class Gland:
    """The pancreas's course (mm): control points, and its centre line with a radius per point."""

    uncinate: np.ndarray
    head: np.ndarray
    neck: np.ndarray
    body: np.ndarray
    r_neck: float  # the neck's radius as drawn (``node_r[2]`` is it scaled)
    node_r: np.ndarray  # (5,) radius at uncinate, head, neck, body, tail
    curve: np.ndarray  # (N, 3) centre line, 1 mm steps, uncinate to tail
    arclen: np.ndarray  # (N,) length along ``curve`` from the uncinate
    radius: np.ndarray  # (N,) radius along ``curve``


def draw_gland(rng: np.random.Generator, aorta: Aorta, spleen_c: np.ndarray) -> Gland:
    """The gland's control points (neck in front of the aorta near z = 0, tail at the spleen
    centred at ``spleen_c``) and radii; the centre line through them."""
    u = rng.uniform
    xa, ya, _ = aorta
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
    return Gland(uncinate, head, neck, body, r_neck, node_r, curve, arclen, radius)


def paint_gland(cv: Canvas, rng: np.random.Generator, gland: Gland, lesions: bool) -> None:
    """Parenchyma inside a lobulated envelope around the centre line (never over the arteries and
    systemic veins painted before), interlobular fat (none, some or much), and with ``lesions`` in
    most cases one spherical lesion inside the gland."""
    u = rng.uniform
    box, dist, along = cv.tube_distance(gland.curve, float(gland.radius.max()) * 1.4)
    if box is None:
        return
    sub = dist.shape
    lobules = smooth(sub, rng, 3.0 / cv.spacing)
    envelope = dist <= np.interp(along, gland.arclen / gland.arclen[-1], gland.radius) * (1 + u(0.1, 0.25) * lobules)
    pancreas = np.zeros(cv.shape, dtype=bool)
    pancreas[box] = envelope & ~np.isin(cv.tissue[box], (T.ARTERY, T.SYSTEMIC_VEIN))
    cv.tissue[pancreas] = T.PANCREAS
    fat_fraction = rng.choice([u(0.0, 0.1), u(0.1, 0.3), u(0.3, 0.5)])
    septa = smooth(sub, rng, 1.5 / cv.spacing)
    if fat_fraction > 0:
        thr = np.quantile(septa[envelope], 1 - fat_fraction) if envelope.any() else np.inf
        cv.paint(box, envelope & (septa > thr), T.PANCREAS_FAT, on=(T.PANCREAS,))
    if lesions and rng.random() < LESION_PROBABILITY:
        curve = gland.curve
        c = curve[int(rng.integers(len(curve) // 6, len(curve) * 5 // 6))]
        lbox, mask = cv.ellipsoid(c, (u(5, 11),) * 3)
        if lbox is not None:
            lesion = np.zeros(cv.shape, dtype=bool)
            lesion[lbox] = mask
            lesion &= pancreas
            cv.tissue[lesion] = T.LESION


def paint_gland_vessels(
    cv: Canvas,
    rng: np.random.Generator,
    gland: Gland,
    aorta: Aorta,
    ivc: tuple[float, float, float, float],
    kidneys: Kidneys,
    spleen_c: np.ndarray,
    ileocaecal: np.ndarray,
    z_mesentery: float,
) -> np.ndarray:
    """SMV and portal vein, SMA, the left renal vein, splenic vein and artery, painted over the
    gland and the bowel; below ``z_mesentery`` (mm) the SMA and SMV run on, tapering, in the
    mesentery to the ``ileocaecal`` region. Returns the SMV/portal confluence (mm)."""
    u = rng.uniform
    xa, ya, ra = aorta
    xi, yi = ivc[:2]
    neck, curve, radius = gland.neck, gland.curve, gland.radius
    # SMV behind the neck, continuing as the portal vein towards the liver hilum.
    r_v = u(5, 7.5)
    confluence = neck + [u(-4, 2), -(gland.r_neck + r_v + u(0, 2)), 0]
    smv = [(confluence[0] + u(-3, 3), confluence[1] + u(0, 8), z_mesentery), confluence - [0, 0, 10], confluence]
    portal = [confluence, confluence + [u(20, 35), -u(5, 15), u(25, 40)]]
    vessel_on = (*FAT, T.PANCREAS, T.PANCREAS_FAT, T.BOWEL_WALL, T.BOWEL_FLUID, T.GAS)
    cv.tube(smv, r_v, T.PORTAL_VEIN, None, on=vessel_on)
    cv.tube(portal, r_v + u(0, 2), T.PORTAL_VEIN, None, on=vessel_on + (T.LIVER,))
    # SMA: from the aorta, anterior, then caudally left of the SMV, in its fat collar.
    r_sma = u(3, 4.5)
    sma = [
        (xa, ya + ra - 2, neck[2] + u(10, 20)),
        (xa + u(0, 5), ya + u(12, 18), neck[2] - 5),
        (xa + u(0, 8), ya + u(25, 40), z_mesentery),
    ]
    cv.tube(sma, r_sma + u(2.5, 5), T.VISCERAL_FAT, None, on=vessel_on)
    cv.tube(sma, r_sma, T.ARTERY, None, on=FAT)
    for start, r, kind, dx in ((sma[-1], r_sma, T.ARTERY, 0), (smv[0], r_v, T.PORTAL_VEIN, 12)):
        path, taper = resample([start, ileocaecal + [dx - 25, 0, 35], ileocaecal + [dx, 0, 0]], 5.0, [r, 0.7 * r, 2])
        cv.capsule_tube(path, taper + 2, T.VISCERAL_FAT, on=vessel_on)
        cv.capsule_tube(path, taper, kind, on=FAT)
    # Left renal vein between the aorta and the SMA to the IVC.
    lk, _ = kidneys[-1]
    lrv_z = lk[2] + u(-5, 10)
    cv.tube(
        [lk + [20, 0, 0], (xa, ya + ra + u(3, 6), lrv_z), (xi, yi, lrv_z)], u(4, 5.5), T.SYSTEMIC_VEIN, None, on=FAT
    )
    # Splenic vein along the posterior border of neck, body and tail; splenic artery above it.
    i_neck = int(np.argmin(np.linalg.norm(curve - neck, axis=1)))
    r_sv = u(3.5, 5.5)
    back = curve[i_neck:] - np.outer(radius[i_neck:] + r_sv - u(0, 2), [0, 1, 0])
    hilum = spleen_c + [u(15, 22), u(0, 10), u(-15, 0)]
    cv.tube(np.vstack([confluence, back[::8], hilum]), r_sv, T.PORTAL_VEIN, None, on=vessel_on)
    wiggle = np.sin(np.linspace(0, u(3, 8) * np.pi, len(back)))[:, None] * [0, u(2, 5), 0]
    top = curve[i_neck:] + np.outer(radius[i_neck:] + u(1, 4), [0, 0, 1]) + wiggle
    cv.tube(np.vstack([(xa, ya, neck[2] + 15), top[::6]]), u(2, 3.2), T.ARTERY, None, on=vessel_on)
    return confluence
