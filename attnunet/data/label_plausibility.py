"""Is a label plausible on its own: not empty, not a few voxels, not far outside the usual volume,
not in far-apart pieces, not outside the body?

Volumes are judged per label: the pancreas (with its lesions, :func:`~attnunet.data.label_alignment.pancreatic_labels`)
against the usual 20-150 mL of an adult pancreas and against the dataset's median; every label
for pieces and for lying outside the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from attnunet.data.body_landmarks import BodyLandmarks
from attnunet.data.findings import ERROR, WARNING, Finding
from attnunet.data.label_alignment import foreground_box

MIN_ML = 1.0  # below: not a pancreas at all (an atrophic one keeps about 10 mL)
TYPICAL_ML = (10.0, 300.0)  # outside: unusual enough to look at (adults: about 20-150 mL)
OUTLIER_FACTOR = 4.0  # this many times smaller or larger than the dataset's median: unusual
MIN_CASES_FOR_MEDIAN = 4
OUTSIDE_SHARE = 0.10  # more of the label outside the body than this: misplaced
PIECE_GAP_MM = 60.0  # a piece this far from the label's largest part is reported (real labels can part at the neck) ...
PIECE_SHARE = 0.05  # ... when it holds at least this share of the label
POINTS = 20_000  # voxels sampled per piece for the distance: millimetres need no more


def measure(
    label: np.ndarray, spacing: np.ndarray, landmarks: BodyLandmarks, names: Mapping[int, str], organ: list[int]
) -> dict[str, Any]:
    """Volume, outside share and far pieces of a label ``(X, Y, Z)`` (RAS, ``spacing`` in mm).

    Returns plain data: ``organ_ml`` (the ``organ`` labels together), ``voxels`` (all foreground)
    and per label value present ``{"ml", "outside", "far_pieces": [[ml, gap_mm], ...]}`` under
    ``labels``.
    """
    voxel_ml = float(np.prod(spacing)) / 1000.0
    box = foreground_box(label)
    if box is None:
        return {"voxels": 0, "organ_ml": 0.0 if organ else None, "labels": {}}
    inside = label[box]
    out: dict[str, Any] = {
        "voxels": int(np.count_nonzero(inside)),
        "organ_ml": float(np.count_nonzero(np.isin(inside, organ)) * voxel_ml) if organ else None,
        "labels": {},
    }
    for value in names:
        mask = inside == value
        count = int(np.count_nonzero(mask)) if value > 0 else 0
        if count == 0:
            continue
        voxels = np.argwhere(mask)
        out["labels"][str(value)] = {
            "ml": round(count * voxel_ml, 3),
            "outside": round(float(np.mean(~landmarks.inside_body(voxels + [b.start for b in box]))), 4),
            "far_pieces": _far_pieces(mask, voxels, spacing, voxel_ml),
        }
    return out


def _far_pieces(mask: np.ndarray, voxels: np.ndarray, spacing: np.ndarray, voxel_ml: float) -> list[list[float]]:
    """``[[ml, gap_mm], ...]`` of the pieces that hold :data:`PIECE_SHARE` of the label and lie
    :data:`PIECE_GAP_MM` or more from its largest piece."""
    lo, hi = voxels.min(0), voxels.max(0) + 1
    parts, count = ndimage.label(mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], structure=np.ones((3, 3, 3)))
    if count < 2:
        return []
    sizes = np.bincount(parts.ravel())[1:]
    largest = 1 + int(np.argmax(sizes))
    tree = cKDTree(_sample(np.argwhere(parts == largest)) * spacing)
    pieces = []
    for piece in np.flatnonzero(sizes >= PIECE_SHARE * len(voxels)) + 1:
        if piece == largest:
            continue
        gap = float(tree.query(_sample(np.argwhere(parts == piece)) * spacing)[0].min())
        if gap >= PIECE_GAP_MM:
            pieces.append([round(float(sizes[piece - 1] * voxel_ml), 2), round(gap, 1)])
    return pieces


def _sample(points: np.ndarray) -> np.ndarray:
    return points if len(points) <= POINTS else points[np.linspace(0, len(points) - 1, POINTS).astype(int)]


def plausibility_findings(measured: Mapping[str, dict[str, Any]], names: Mapping[int, str]) -> list[Finding]:
    """Findings of every case from ``{case: measure(...)}`` (volumes also against the other cases)."""
    findings = []
    volumes = {c: m["organ_ml"] for c, m in measured.items() if m["organ_ml"]}
    for case, m in measured.items():
        if m["voxels"] == 0:
            findings.append(Finding(case, ERROR, "label_empty", "label is empty (no voxel above 0)"))
            continue
        findings += _volume_findings(case, m, volumes)
        for value, stats in m["labels"].items():
            name = f"label {value} ({names.get(int(value), '?')})"
            if stats["outside"] > OUTSIDE_SHARE:
                why = f"{stats['outside']:.0%} of {name} lies outside the body"
                findings.append(Finding(case, ERROR, "label_outside_body", why))
            for ml, gap in stats["far_pieces"]:
                why = f"{name} has a piece of {ml:g} mL {gap:.0f} mm from its main part"
                findings.append(Finding(case, WARNING, "label_pieces", why))
    return findings


def _volume_findings(case: str, m: dict[str, Any], volumes: Mapping[str, float]) -> list[Finding]:
    ml = m["organ_ml"]
    if ml is None:
        return []
    if ml < MIN_ML:
        why = f"pancreas label is {ml:.2f} mL ({m['voxels']} voxels): far too small for a pancreas (20-150 mL)"
        return [Finding(case, ERROR, "label_tiny", why)]
    others = [v for c, v in volumes.items() if c != case]
    if len(others) >= MIN_CASES_FOR_MEDIAN:
        median = float(np.median(others))
        if not median / OUTLIER_FACTOR <= ml <= median * OUTLIER_FACTOR:
            why = f"pancreas label is {ml:.1f} mL, {OUTLIER_FACTOR:g}x off the dataset's median {median:.1f} mL"
            return [Finding(case, WARNING, "label_volume", why)]
    if not TYPICAL_ML[0] <= ml <= TYPICAL_ML[1]:
        why = f"pancreas label is {ml:.1f} mL; a pancreas is usually 20-150 mL"
        return [Finding(case, WARNING, "label_volume", why)]
    return []
