"""Painting tools of the phantom: tissue classes and a canvas in world millimetres.

Shapes are painted on a straight grid (separable coordinates; distance transforms or chains of
capsules for tubes), then the finished map is resampled once through a smooth random displacement
field (:meth:`Canvas.warped`).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

Box = tuple[slice, slice, slice]  # index box on the grid


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
    METAL = 24  # implants


class Canvas:
    """A grid in world mm and a tissue map to paint on; :meth:`warped` bends the result elastically.

    Shapes are painted on the straight grid (fast: separable coordinates, distance transforms or
    capsule chains for tubes), then the finished maps are resampled once through a smooth random
    displacement field.
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

    def paint(self, box: Box, mask: np.ndarray, tissue: Tissue, on: tuple[Tissue, ...] | None = None) -> None:
        """Set ``tissue`` where ``mask`` (broadcast to ``box``) holds, and with ``on`` only where
        the map held one of those tissues."""
        region = self.tissue[box]
        mask = np.broadcast_to(mask, region.shape)
        if on is not None:
            mask = mask & among(region, on)
        region[mask] = tissue

    def ellipsoid(
        self, centre, radii, tissue: Tissue | None = None, on: tuple[Tissue, ...] | None = None, box: Box | None = None
    ) -> tuple[Box, np.ndarray] | tuple[None, None]:
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

    def hollow(
        self, centre, radii, wall_mm: float, wall: Tissue, fill: Tissue, on: tuple[Tissue, ...]
    ) -> tuple[Box, np.ndarray] | tuple[None, None]:
        """An ellipsoidal organ with a wall: ``wall`` in its outer ``wall_mm``, ``fill`` inside, both
        only where the map held one of ``on``. Returns ``(box, inner mask)``."""
        box, outer = self.ellipsoid(centre, radii)
        if box is None:
            return None, None
        _, inner = self.ellipsoid(centre, np.maximum(np.asarray(radii, float) - wall_mm, 0.5), box=box)
        free = among(self.tissue[box], on)
        self.paint(box, outer & free, wall)
        self.paint(box, inner & free, fill)
        return box, inner & free

    def tube_distance(
        self, path: np.ndarray, reach: float
    ) -> tuple[Box, np.ndarray, np.ndarray] | tuple[None, None, None]:
        """Distance (mm) of the voxels near ``path`` (N, 3) to it, and where along the path (0..1,
        by arc length) the nearest point lies: ``(box, distance, along)``, or Nones off the grid."""
        path = densify(path, step=0.5 * float(self.spacing.min()))
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
        """A tube of ``radius`` (mm) along the spline through ``path`` (by a distance transform):
        ``wall`` only where the map held one of ``on`` (anywhere when None), ``lumen`` deeper than
        ``wall_mm`` inside that wall."""
        box, dist, _ = self.tube_distance(np.asarray(path, float), radius)
        if box is None:
            return
        self.paint(box, dist <= radius, wall, on)
        if lumen is not None and radius > wall_mm + 0.5:
            self.paint(box, dist <= radius - wall_mm, lumen, on=(wall,))

    def column(self, centre: np.ndarray, radii: np.ndarray, tissue: Tissue, on=None) -> None:
        """Paint a stack of axis-aligned ellipses, one per grid slice: ``centre`` and ``radii`` are
        ``(Z, 2)`` (mm, x and y) over the grid's z axis; slices whose radii are not positive stay."""
        centre = np.asarray(centre, np.float32)
        radii = np.asarray(radii, np.float32)
        valid = (radii > 0).all(1)
        if not valid.any():
            return
        k = np.nonzero(valid)[0]
        lo, hi = (centre - radii)[valid].min(0), (centre + radii)[valid].max(0)
        z0 = float(self.axes[2][0])
        box = self.box(np.r_[lo, z0], np.r_[hi, z0])
        if box is None:
            return
        box = (box[0], box[1], slice(int(k[0]), int(k[-1]) + 1))
        x, y, _ = self.local(box)
        c, r = centre[box[2]], np.where(valid[box[2], None], radii[box[2]], np.float32(1e-3))
        mask = ((x - c[:, 0]) / r[:, 0]) ** 2 + ((y - c[:, 1]) / r[:, 1]) ** 2 <= 1
        self.paint(box, mask, tissue, on)

    def capsule_field(
        self, path, radius, nearest: bool = False
    ) -> tuple[Box, np.ndarray, np.ndarray | None] | tuple[None, None, None]:
        """Signed distance (mm, negative inside) to a chain of round-ended cones through ``path``
        ``(N, 3)`` with radii ``radius`` (scalar or ``(N,)``), and with ``nearest`` the index of the
        nearest segment.

        Evaluated segment by segment in small boxes: cheaper than a distance transform for long or
        many tubes. Returns ``(box, field, owner)`` (owner None without ``nearest``), or Nones when
        the chain misses the grid.
        """
        path = np.asarray(path, np.float32)
        radius = np.broadcast_to(np.asarray(radius, np.float32), (len(path),))
        reach = float(radius.max())
        box = self.box(path.min(0) - reach, path.max(0) + reach)
        if box is None or len(path) < 2:
            return None, None, None
        field = np.full(tuple(b.stop - b.start for b in box), np.inf, dtype=np.float32)
        owner = np.zeros(field.shape, dtype=np.int32) if nearest else None
        for i in range(len(path) - 1):
            p0, d, r0, dr = path[i], path[i + 1] - path[i], radius[i], radius[i + 1] - radius[i]
            r = max(r0, radius[i + 1])
            sub = self.box(np.minimum(p0, p0 + d) - r, np.maximum(p0, p0 + d) + r)
            if sub is None:
                continue
            x, y, z = (c - p for c, p in zip(self.local(sub), p0))
            t = np.clip((x * d[0] + y * d[1] + z * d[2]) / max(float(d @ d), 1e-6), 0, 1)
            dist = np.sqrt((x - t * d[0]) ** 2 + (y - t * d[1]) ** 2 + (z - t * d[2]) ** 2) - (r0 + t * dr)
            rel = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sub, box))
            part = field[rel]
            if nearest:
                better = dist < part
                part[better] = dist[better]
                owner[rel][better] = i
            else:
                np.minimum(part, dist, out=part)
        return box, field, owner

    def capsule_tube(self, path, radius, wall: Tissue, lumen=None, wall_mm: float = 3.0, on=None) -> None:
        """A tube along ``path`` made of capsules (see :meth:`capsule_field`): ``wall`` within
        ``radius``, ``lumen`` deeper than ``wall_mm``; ``lumen`` may be one Tissue per segment."""
        per_segment = lumen is not None and not isinstance(lumen, Tissue | int)
        box, field, owner = self.capsule_field(path, radius, nearest=per_segment)
        if box is None:
            return
        self.paint(box, field <= 0, wall, on)
        if lumen is None:
            return
        inner = field <= -wall_mm
        if not per_segment:
            self.paint(box, inner, lumen, on=(wall,))
            return
        region = self.tissue[box]
        inner &= region == wall
        region[inner] = np.asarray(lumen, dtype=np.uint8)[owner[inner]]

    def warped(self, rng: np.random.Generator, warp_mm: float, *maps: np.ndarray) -> list[np.ndarray]:
        """Resample ``maps`` (nearest neighbour) through one smooth random displacement field."""
        coarse = tuple(max(3, int(n * s / 15)) for n, s in zip(self.shape, self.spacing))
        index_type = np.int32 if np.prod(self.shape) < 2**31 else np.intp
        flat = np.zeros(self.shape, dtype=index_type)  # source voxel of each voxel, as a flat index
        for i, n in enumerate(self.shape):
            field = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), 1.2)
            field *= warp_mm / max(float(field.std()), 1e-6) / self.spacing[i]
            where = upsample(field, self.shape)
            where += np.arange(n, dtype=np.float32).reshape([-1 if a == i else 1 for a in range(3)])
            np.clip(np.rint(where, out=where), 0, n - 1, out=where)
            flat *= n
            flat += where.astype(index_type)
        return [np.take(m.reshape(-1), flat) for m in maps]


def among(tissue: np.ndarray, kinds) -> np.ndarray:
    """``np.isin(tissue, kinds)`` for a uint8 tissue map, as one table look-up."""
    table = np.zeros(256, dtype=bool)
    table[np.asarray(kinds, dtype=np.uint8)] = True
    return table[tissue]


def upsample(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Multilinear upsampling of a small field to ``shape`` (corners aligned), one small matmul per axis
    (any number of axes; an axis whose size stays the same is kept as it is)."""
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


def densify(path: np.ndarray, step: float) -> np.ndarray:
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


def resample(nodes: np.ndarray, step: float, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Points every ``step`` mm on the spline through ``nodes`` ``(N, 3)``, and per-node ``values``
    ``(N,)`` interpolated along it (linearly between nodes)."""
    nodes = np.asarray(nodes, float)
    chord = np.r_[0, np.cumsum(np.linalg.norm(np.diff(nodes, axis=0), axis=1))]
    points = densify(nodes, step)
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    where = arc / max(arc[-1], 1e-6) * chord[-1]
    return (points, *(np.interp(where, chord, np.asarray(v, float)) for v in values))


def random_walk(rng: np.random.Generator, start, steps: int, step_mm: float, persistence: float) -> np.ndarray:
    """A wandering path ``(steps + 1, 3)`` from ``start``: steps of ``step_mm`` whose direction keeps
    ``persistence`` (0..1) of the last one, starting mostly in the axial plane."""
    direction = rng.normal(size=3)
    direction[2] *= 0.5
    direction /= np.linalg.norm(direction)
    points = [np.asarray(start, float)]
    for _ in range(steps):
        direction = persistence * direction + (1 - persistence) * rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        points.append(points[-1] + step_mm * direction)
    return np.array(points)


def smooth(
    shape: tuple[int, ...],
    rng: np.random.Generator,
    sigma_vox,
    scale: float = 1.0,
    draw_dtype: type = np.float64,
    truncate: float = 4.0,
    estimate_above: float = np.inf,
) -> np.ndarray:
    """Gaussian-filtered white noise (float32) with standard deviation ``scale``; of fields larger
    than ``estimate_above`` voxels the deviation is estimated on every 8th voxel.

    The defaults are the anatomy's (float64 draws, a 4-sigma filter, the exact deviation); appearance
    draws its large fields in float32 with a shorter filter (``truncate=3``) and estimates their
    deviation, which is faster on the whole scan.
    """
    noise = rng.standard_normal(shape, dtype=draw_dtype).astype(np.float32, copy=False)
    field = ndimage.gaussian_filter(noise, sigma_vox, truncate=truncate)
    sample = field[::2, ::2, ::2] if field.size > estimate_above else field
    field /= max(float(sample.std()), 1e-6) / scale
    return field
