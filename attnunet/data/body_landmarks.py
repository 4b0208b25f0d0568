"""Where the body and the spine lie in an abdominal CT, found from HU alone (no model).

The label audit measures a label's position against these landmarks: the pancreas lies inside
the body, anterior to the spine and near the body's midline. Everything is computed on a coarse
grid (about 4 mm voxels) because the landmarks need no detail and a full-size CT has 60 M voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

COARSE_MM = 4.0
BODY_HU = -500.0  # above: tissue; below: air (outside the body, lung, bowel gas)
BONE_HU = 200.0  # cancellous vertebral bone lies at about 150-300 HU, its cortex higher
SPINE_BAND = 0.12  # the spine is searched within this share of the body's width either side of its middle


@dataclass(frozen=True)
class BodyLandmarks:
    """Body mask and spine position of one CT in RAS voxel order (x: left -> right, y: posterior ->
    anterior, z: inferior -> superior).

    Attributes:
        step: ``(3,)`` voxels of the full grid per coarse voxel along each axis.
        spacing: ``(3,)`` full-grid voxel size in mm.
        body: ``(X', Y', Z')`` bool on the coarse grid: tissue inside the body outline, lungs and
            bowel gas included (holes are filled slice by slice), the scanner table left out.
        spine: ``(X', Y', Z')`` bool on the coarse grid: the vertebrae (bone near the body's middle,
            behind its centre, with the marrow inside filled in).
        spine_mm: ``(Z', 2)`` position of the spine (median x and y of its bone) per coarse slice in
            mm on the full grid; NaN where a slice shows no spine.
        anterior: +1 when anterior is +y (supine patient, header as usual), -1 when the spine is
            found in the body's front half (the image is stored mirrored front to back).
    """

    step: np.ndarray
    spacing: np.ndarray
    body: np.ndarray
    spine: np.ndarray
    spine_mm: np.ndarray
    anterior: int

    def inside_body(self, voxels: np.ndarray) -> np.ndarray:
        """Whether each full-grid voxel ``(N, 3)`` lies inside the body outline: ``(N,)`` bool."""
        return self._lookup(self.body, voxels)

    def on_spine(self, voxels: np.ndarray) -> np.ndarray:
        """Whether each full-grid voxel ``(N, 3)`` lies on a vertebra: ``(N,)`` bool."""
        return self._lookup(self.spine, voxels)

    def _lookup(self, mask: np.ndarray, voxels: np.ndarray) -> np.ndarray:
        coarse = np.minimum(voxels // self.step, np.array(mask.shape) - 1)
        return mask[coarse[:, 0], coarse[:, 1], coarse[:, 2]]

    def spine_at(self, z_voxels: np.ndarray) -> np.ndarray | None:
        """Median spine position ``(x, y)`` in mm over the slices holding ``z_voxels`` (full-grid
        slice indices); the nearest slices with a spine when those show none; None without any."""
        found = np.flatnonzero(~np.isnan(self.spine_mm[:, 0]))
        if len(found) == 0:
            return None
        slices = np.unique(np.minimum(z_voxels // self.step[2], len(self.spine_mm) - 1))
        with_spine = np.intersect1d(slices, found)
        if len(with_spine) == 0:
            centre = np.median(slices)
            with_spine = found[np.argsort(np.abs(found - centre))[: max(1, len(slices))]]
        return np.median(self.spine_mm[with_spine], axis=0)


def find_landmarks(image: np.ndarray, spacing: np.ndarray) -> BodyLandmarks:
    """Body and spine of a CT ``(X, Y, Z)`` in HU, RAS voxel order, ``spacing`` ``(3,)`` in mm."""
    spacing = np.asarray(spacing, dtype=np.float64)
    step = np.maximum(1, np.round(COARSE_MM / spacing)).astype(int)
    coarse = np.asarray(image[:: step[0], :: step[1], :: step[2]], dtype=np.float32)
    body = _body_mask(coarse)
    bone = (coarse > BONE_HU) & body
    band = _central_band(body)
    half = _front_half(body)
    spine_behind = np.count_nonzero(bone & band & ~half)
    spine_in_front = np.count_nonzero(bone & band & half)
    anterior = 1 if spine_behind >= spine_in_front else -1
    spine = _filled(bone & band & (~half if anterior == 1 else half))
    spine_mm = np.full((coarse.shape[2], 2), np.nan)
    for z in range(coarse.shape[2]):
        xy = np.argwhere(spine[:, :, z])
        if len(xy) >= 3:
            spine_mm[z] = np.median(xy, axis=0) * step[:2] * spacing[:2]
    return BodyLandmarks(step, spacing, body, spine, spine_mm, anterior)


IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)


def _filled(mask: np.ndarray) -> np.ndarray:
    """``mask`` closed and with its holes filled slice by slice (a vertebra's cortex around its marrow)."""
    return ndimage.binary_fill_holes(ndimage.binary_closing(mask, structure=IN_PLANE), structure=IN_PLANE)


def _body_mask(coarse: np.ndarray) -> np.ndarray:
    """Tissue above :data:`BODY_HU`, holes filled per axial slice, largest connected part only."""
    body = ndimage.binary_fill_holes(coarse > BODY_HU, structure=IN_PLANE)
    parts, count = ndimage.label(body)
    if count > 1:
        sizes = ndimage.sum_labels(body, parts, range(1, count + 1))
        body = parts == 1 + int(np.argmax(sizes))
    return body


def _central_band(body: np.ndarray) -> np.ndarray:
    """Per slice, the voxels within :data:`SPINE_BAND` of the body's width from its middle (x)."""
    band = np.zeros_like(body)
    xs = np.arange(body.shape[0])
    for z in range(body.shape[2]):
        cols = np.flatnonzero(body[:, :, z].any(axis=1))
        if len(cols):
            middle = np.median(np.nonzero(body[:, :, z])[0])  # the body's middle, not its box's: arms widen the box
            band[:, :, z] = (np.abs(xs - middle) <= SPINE_BAND * (cols[-1] - cols[0] + 1))[:, None]
    return band


def _front_half(body: np.ndarray) -> np.ndarray:
    """Per slice, the voxels anterior (higher y) to the middle of the body's y extent."""
    half = np.zeros_like(body)
    ys = np.arange(body.shape[1])
    for z in range(body.shape[2]):
        rows = np.flatnonzero(body[:, :, z].any(axis=0))
        if len(rows):
            half[:, :, z] = (ys > (rows[0] + rows[-1]) / 2)[None, :]
    return half
