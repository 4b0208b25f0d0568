"""Anatomy of the phantom: a tissue map of the upper abdomen with the pancreas in its real neighbourhood.

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
  gallbladder, spleen, kidneys, spine, psoas and paraspinal muscles, body wall, lung bases.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline


class Tissue(IntEnum):
    """Tissue classes of the phantom; appearance gives each one a Hounsfield distribution."""

    AIR = 0
    SUBCUTANEOUS_FAT = 1
    MUSCLE = 2
    VISCERAL_FAT = 3
    BONE_CORTEX = 4
    BONE_MARROW = 5
    CSF = 6
    LIVER = 7
    SPLEEN = 8
    KIDNEY_CORTEX = 9
    KIDNEY_MEDULLA = 10
    ARTERY = 11
    SYSTEMIC_VEIN = 12
    PORTAL_VEIN = 13
    BOWEL_WALL = 14
    BOWEL_FLUID = 15
    GAS = 16
    STOOL = 17
    BILE = 18
    PANCREAS = 19
    PANCREAS_FAT = 20
    LESION = 21
    LUNG = 22
    FOOD = 23


@dataclass
class Anatomy:
    """Tissue map and labels on the (fine) rendering grid."""

    tissue: np.ndarray  # uint8 Tissue per voxel
    pancreas: np.ndarray  # bool: pancreas envelope (parenchyma and interlobular fat), lesion excluded
    lesion: np.ndarray  # bool
    centerline: np.ndarray  # (N, 3) pancreas centre line, uncinate to tail (mm)


class Canvas:
    """A grid in world mm and a tissue map to paint on; :meth:`warped` bends the result elastically.

    Shapes are painted on the straight grid (fast: separable coordinates, distance transforms for
    tubes), then the finished maps are resampled once through a smooth random displacement field.
    """

    def __init__(self, axes: tuple[np.ndarray, np.ndarray, np.ndarray]):
        self.axes = axes
        self.spacing = np.array([float(a[1] - a[0]) for a in axes])
        self.shape = tuple(len(a) for a in axes)
        self.coords = np.meshgrid(*[a.astype(np.float32) for a in axes], indexing="ij", sparse=True)
        self.tissue = np.full(self.shape, Tissue.AIR, dtype=np.uint8)

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, ...] | None:
        """Index box covering the world-space box [lo, hi]; None when outside the grid."""
        out = []
        for a, s, lo_, hi_ in zip(self.axes, self.spacing, lo, hi):
            i0 = max(int(np.floor((lo_ - a[0]) / s)), 0)
            i1 = min(int(np.ceil((hi_ - a[0]) / s)) + 1, len(a))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)

    def local(self, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinates (broadcastable) of the voxels in ``box``."""
        return tuple(c[tuple(b if c.shape[i] > 1 else slice(None) for i, b in enumerate(box))] for c in self.coords)

    def paint(self, box, mask: np.ndarray, tissue: Tissue, on: tuple[Tissue, ...] | None = None) -> None:
        region = self.tissue[box]
        mask = np.broadcast_to(mask, region.shape)
        if on is not None:
            mask = mask & np.isin(region, np.array(on, dtype=np.uint8))
        region[mask] = tissue

    def ellipsoid(self, centre, radii, tissue: Tissue | None = None, on=None, box=None):
        """Paint (when ``tissue``) and return ``(box, mask)`` of an axis-aligned ellipsoid."""
        centre, radii = np.asarray(centre, float), np.asarray(radii, float)
        box = self.box(centre - radii, centre + radii) if box is None else box
        if box is None:
            return None, None
        x, y, z = self.local(box)
        d = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((z - centre[2]) / radii[2]) ** 2
        mask = np.broadcast_to(d <= 1, tuple(b.stop - b.start for b in box))
        if tissue is not None:
            self.paint(box, mask, tissue, on)
        return box, mask

    def tube_distance(self, path: np.ndarray, reach: float):
        """Distance (mm) of the voxels near ``path`` (N, 3) to it, and where along the path (0..1,
        by arc length) the nearest point lies."""
        path = _densify(path, step=0.5 * float(self.spacing.min()))
        box = self.box(path.min(0) - reach - self.spacing, path.max(0) + reach + self.spacing)
        if box is None:
            return None, None, None
        shape = tuple(b.stop - b.start for b in box)
        origin = np.array([a[b.start] for a, b in zip(self.axes, box)])
        idx = np.rint((path - origin) / self.spacing).astype(int)
        inside = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
        if not inside.any():
            return None, None, None
        seed = np.full(shape, -1, dtype=np.int32)
        seed[tuple(idx[inside].T)] = np.nonzero(inside)[0]
        dist, nearest = ndimage.distance_transform_edt(seed < 0, sampling=self.spacing, return_indices=True)
        return box, dist.astype(np.float32), seed[tuple(nearest)] / max(len(path) - 1, 1)

    def tube(self, path, radius: float, wall: Tissue, lumen: Tissue | None, wall_mm: float = 3.0, on=None) -> None:
        box, dist, _ = self.tube_distance(np.asarray(path, float), radius)
        if box is None:
            return
        self.paint(box, dist <= radius, wall, on)
        if lumen is not None and radius > wall_mm + 0.5:
            self.paint(box, dist <= radius - wall_mm, lumen, on=(wall,))

    def warped(self, rng: np.random.Generator, warp_mm: float, *maps: np.ndarray) -> list[np.ndarray]:
        """Resample ``maps`` (nearest neighbour) through one smooth random displacement field."""
        coarse = tuple(max(3, int(n * s / 15)) for n, s in zip(self.shape, self.spacing))
        index = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in self.shape], indexing="ij", sparse=True)
        where = []
        for i, g in enumerate(index):
            field = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), 1.2)
            field *= warp_mm / max(float(field.std()), 1e-6) / self.spacing[i]
            where.append(np.clip(np.rint(g + upsample(field, self.shape)), 0, self.shape[i] - 1).astype(np.intp))
        return [m[tuple(where)] for m in maps]


def upsample(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear upsampling of a small 3D field to ``shape`` (corners aligned), as three small matmuls."""
    out = coarse.astype(np.float32)
    for axis, n in enumerate(shape):
        c = out.shape[axis]
        pos = np.linspace(0, c - 1, n)
        lo = np.minimum(np.floor(pos).astype(int), c - 2) if c > 1 else np.zeros(n, int)
        w = np.zeros((n, c), np.float32)
        if c == 1:
            w[:, 0] = 1
        else:
            frac = pos - lo
            w[np.arange(n), lo] = 1 - frac
            w[np.arange(n), lo + 1] = frac
        out = np.moveaxis(np.tensordot(w, np.moveaxis(out, axis, 0), axes=1), 0, axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def _densify(path: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` mm along a polyline (smoothed with a spline through its nodes)."""
    path = np.asarray(path, float)
    if len(path) < 2:
        return path
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    keep = np.r_[True, seg > 1e-6]
    path = path[keep]
    if len(path) < 2:
        return path
    t = np.r_[0, np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))]
    n = max(int(t[-1] / step) + 1, 2)
    s = np.linspace(0, t[-1], n)
    if len(path) >= 3:
        return CubicSpline(t, path, bc_type="natural")(s)
    return np.stack([np.interp(s, t, path[:, i]) for i in range(3)], 1)


def _random_walk(rng: np.random.Generator, start, steps: int, step_mm: float, persistence: float) -> np.ndarray:
    direction = rng.normal(size=3)
    direction[2] *= 0.5
    direction /= np.linalg.norm(direction)
    points = [np.asarray(start, float)]
    for _ in range(steps):
        direction = persistence * direction + (1 - persistence) * rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        points.append(points[-1] + step_mm * direction)
    return np.array(points)


def make_anatomy(
    axes: tuple[np.ndarray, np.ndarray, np.ndarray], rng: np.random.Generator, lesions: bool = False
) -> Anatomy:
    """Paint one random abdomen on the grid given by its world axes (mm, RAS, pancreas neck near 0)."""
    cv = Canvas(axes)
    u = rng.uniform
    zlo, zhi = float(axes[2][0]), float(axes[2][-1])
    far = 1e4

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

    # Spine and back muscles (posterior), psoas beside the vertebral bodies (growing caudally).
    ys = cy - ay_ + fat_t + u(60, 75)
    xs = cx + u(-4, 4)
    for side in (1, -1):
        cv.ellipsoid((xs + side * u(30, 38), ys - u(38, 45), 0), (u(24, 30), u(20, 26), far), Tissue.MUSCLE)
    cv.ellipsoid((xs, ys, 0), (u(19, 23), u(16, 19), far), Tissue.BONE_CORTEX)
    cv.ellipsoid((xs, ys, 0), (u(15, 18), u(12, 15), far), Tissue.BONE_MARROW)
    cv.ellipsoid((xs, ys - 30, 0), (u(7, 10), u(16, 22), far), Tissue.BONE_CORTEX)
    cv.ellipsoid((xs, ys - 24, 0), (u(6, 8), u(6, 8), far), Tissue.CSF)
    # Intervertebral discs every ~35 mm (soft tissue across the vertebral body).
    disc0 = u(0, 35)
    for zd in np.arange(zlo - 35 + disc0, zhi + 35, 35.0):
        cv.ellipsoid((xs, ys, zd), (22, 19, u(3, 5)), Tissue.MUSCLE, on=(Tissue.BONE_MARROW, Tissue.BONE_CORTEX))
    psoas_top = u(-20, 10)
    for side in (1, -1):
        path = [(xs + side * u(26, 32), ys + u(0, 8), psoas_top), (xs + side * u(40, 50), ys + u(5, 15), zlo - 20)]
        box, dist, _ = cv.tube_distance(np.array(path), 30)
        if box is not None:
            r = 6 + 18 * np.clip((psoas_top - cv.local(box)[2]) / 110, 0, 1)
            cv.paint(box, dist <= r, Tissue.MUSCLE, on=(Tissue.VISCERAL_FAT,))

    # Great vessels.
    xa, ya = xs + u(-16, -6), ys + u(26, 32)
    ra = u(9, 12.5)
    cv.ellipsoid((xa, ya, 0), (ra, ra, far), Tissue.ARTERY)
    xi, yi = xs + u(20, 30), ys + u(22, 30)
    cv.ellipsoid((xi, yi, 0), (u(10, 13), u(7, 10), far), Tissue.SYSTEMIC_VEIN)

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
    # Lung bases posterior, above the diaphragm domes.
    for side in (1, -1):
        c = (xs + side * u(55, 75), ys + u(0, 20), u(105, 135))
        cv.ellipsoid(c, (u(50, 65), u(45, 60), u(60, 75)), Tissue.LUNG, on=(Tissue.VISCERAL_FAT, Tissue.LIVER))

    # Pancreas control points: uncinate -> head -> neck -> body -> tail.
    r_neck = u(6.5, 9)
    neck = np.array([xa + u(15, 28), ya + u(24, 34), u(-4, 4)])
    head = np.array([neck[0] + u(20, 32), neck[1] - u(4, 14), neck[2] - u(10, 22)])
    uncinate = np.array([head[0] - u(12, 20), ya + u(4, 10), head[2] - u(10, 18)])
    body = np.array([xa - u(8, 25), ya + u(24, 36), u(0, 12)])
    tail = np.array([spleen_c[0] + u(18, 30), spleen_c[1] + u(-5, 12), spleen_c[2] - u(10, 30)])
    nodes = np.array([uncinate, head, neck, body, tail])
    node_r = np.array([u(7, 10), u(11, 16), r_neck, u(8, 11.5), u(7, 10.5)]) * u(0.8, 1.1)
    curve = _densify(nodes, step=1.0)
    chord = np.r_[0, np.cumsum(np.linalg.norm(np.diff(nodes, axis=0), axis=1))]
    arclen = np.r_[0, np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))]
    radius = np.interp(arclen / arclen[-1], chord / chord[-1], node_r)

    # Bowel, painted only into fat: jejunal/ileal loops, colon, then stomach and duodenum.
    def content() -> Tissue:
        return [Tissue.BOWEL_WALL, Tissue.BOWEL_FLUID, Tissue.GAS][int(rng.choice(3, p=[0.45, 0.4, 0.15]))]

    soft = (Tissue.VISCERAL_FAT,)
    colon_r = u(17, 24)
    colon = [
        (xs + ai * u(0.55, 0.7), ys + u(10, 30), zlo - 20),
        (xs + ai * u(0.5, 0.65), cy + u(-10, 20), neck[2] - u(5, 25)),
        (cx + u(-10, 10), cy + bi - u(25, 40), neck[2] - u(25, 60)),
        (xs - ai * u(0.55, 0.7), cy + u(0, 25), neck[2] + u(10, 30)),
        (xs - ai * u(0.6, 0.75), ys + u(10, 30), zlo - 20),
    ]
    cv.tube(colon, colon_r, Tissue.BOWEL_WALL, Tissue.STOOL if rng.random() < 0.6 else Tissue.GAS, on=soft)
    for _ in range(int(rng.integers(18, 32))):
        start = (cx + u(-0.75, 0.55) * ai, u(ya + 15, cy + bi * 0.8), u(zlo - 10, neck[2] + 15))
        loop = _random_walk(rng, start, int(rng.integers(6, 16)), 7.0, u(0.6, 0.85))
        cv.tube(loop, u(7, 12), Tissue.BOWEL_WALL, content(), wall_mm=u(2, 3.5), on=soft)
    # Mesenteric vessels fanning out anteriorly and caudally from the SMA/SMV.
    for _ in range(int(rng.integers(10, 24))):
        start = (xa + u(0, 25), ya + u(15, 30), neck[2] - u(10, 60))
        twig = _random_walk(rng, start, int(rng.integers(4, 10)), 6.0, 0.8)
        kind = Tissue.ARTERY if rng.random() < 0.5 else Tissue.PORTAL_VEIN
        cv.tube(twig, u(1.2, 2.5), kind, None, on=soft)
    # Fat stranding: thin vessels, lymphatics and septa everywhere in the visceral fat, which partial
    # volume turns into the -80..0 HU that a fatty pancreas shows too.
    for _ in range(int(rng.integers(40, 90))):
        start = (cx + u(-0.85, 0.85) * ai, u(ys, cy + bi * 0.9), u(zlo, zhi))
        strand = _random_walk(rng, start, int(rng.integers(3, 8)), 6.0, 0.7)
        cv.tube(strand, u(0.6, 1.4), Tissue.BOWEL_WALL if rng.random() < 0.5 else Tissue.MUSCLE, None, on=soft)
    # Lymph nodes: small soft-tissue ovoids in the mesentery and around the vessels.
    for _ in range(int(rng.integers(4, 14))):
        c = (xa + u(-40, 50), ya + u(0, 60), neck[2] + u(-50, 20))
        cv.ellipsoid(c, (u(3, 7), u(3, 6), u(4, 9)), Tissue.BOWEL_WALL, on=soft)
    stomach_c = np.array([xs - u(30, 55), cy + u(25, 45), u(30, 55)])
    stomach_r = np.array([u(38, 55), u(26, 36), u(35, 50)])
    stomach_c[1] = max(stomach_c[1], body[1] + node_r[3] + stomach_r[1] * 0.7 + u(0, 6))  # anterior to body
    stomach_wall = u(3, 6)
    box, outer = cv.ellipsoid(stomach_c, stomach_r)
    _, inner = cv.ellipsoid(stomach_c, stomach_r - stomach_wall, box=box)
    if box is not None:
        stomach_on = (Tissue.VISCERAL_FAT, Tissue.LIVER, Tissue.BOWEL_WALL, Tissue.BOWEL_FLUID, Tissue.GAS)
        cv.paint(box, outer, Tissue.BOWEL_WALL, on=stomach_on)
        fill = [Tissue.FOOD, Tissue.BOWEL_FLUID, Tissue.BOWEL_WALL][int(rng.integers(3))]
        cv.paint(box, inner, fill, on=(Tissue.BOWEL_WALL,))
        level = stomach_c[1] + stomach_r[1] * u(-0.2, 0.9)  # air-fluid level: gas rises anteriorly (supine)
        cv.paint(box, inner & (cv.local(box)[1] > level), Tissue.GAS, on=(fill,))
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
        lobules = _smooth(sub, rng, 3.0 / cv.spacing)
        envelope = dist <= np.interp(along, arclen / arclen[-1], radius) * (1 + u(0.1, 0.25) * lobules)
        pancreas[box] = envelope & ~np.isin(cv.tissue[box], (Tissue.ARTERY, Tissue.SYSTEMIC_VEIN))
        cv.tissue[pancreas] = Tissue.PANCREAS
        fat_fraction = rng.choice([u(0.0, 0.1), u(0.1, 0.3), u(0.3, 0.5)])
        septa = _smooth(sub, rng, 1.5 / cv.spacing)
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
    smv = [(confluence[0] + u(-3, 3), confluence[1] + u(0, 8), zlo - 20), confluence - [0, 0, 10], confluence]
    portal = [confluence, confluence + [u(20, 35), -u(5, 15), u(25, 40)]]
    vessel_on = (*soft, Tissue.PANCREAS, Tissue.PANCREAS_FAT, Tissue.BOWEL_WALL, Tissue.BOWEL_FLUID, Tissue.GAS)
    cv.tube(smv, r_v, Tissue.PORTAL_VEIN, None, on=vessel_on)
    cv.tube(portal, r_v + u(0, 2), Tissue.PORTAL_VEIN, None, on=vessel_on + (Tissue.LIVER,))
    # SMA: from the aorta, anterior, then caudally left of the SMV, in its fat collar.
    r_sma = u(3, 4.5)
    sma = [
        (xa, ya + ra - 2, neck[2] + u(10, 20)),
        (xa + u(0, 5), ya + u(12, 18), neck[2] - 5),
        (xa + u(0, 8), ya + u(25, 40), zlo - 20),
    ]
    cv.tube(sma, r_sma + u(2.5, 5), Tissue.VISCERAL_FAT, None, on=vessel_on)
    cv.tube(sma, r_sma, Tissue.ARTERY, None, on=(Tissue.VISCERAL_FAT,))
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

    tissue = cv.warped(rng, rng.uniform(2.0, 5.0), cv.tissue)[0]
    pancreas = np.isin(tissue, (Tissue.PANCREAS, Tissue.PANCREAS_FAT))
    lesion = tissue == Tissue.LESION
    return Anatomy(tissue, pancreas, lesion, curve)


def _smooth(shape: tuple[int, ...], rng: np.random.Generator, sigma_vox) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return field / max(float(field.std()), 1e-6)
