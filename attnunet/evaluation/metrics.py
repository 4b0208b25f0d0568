"""Per-case, per-label segmentation metrics in physical units (MONAI metrics on the real spacing).

Conventions when a mask is empty (MONAI leaves these undefined: NaN or inf):

| reference | prediction | dice | nsd | hd95_mm | precision | recall |
| --- | --- | --- | --- | --- | --- | --- |
| empty | empty | 1 | 1 | 0 | NaN | NaN |
| empty | not empty | 0 | 0 | image diagonal | 0 | NaN |
| not empty | empty | 0 | 0 | image diagonal | NaN | 0 |

NaN entries are undefined and left out of the summary statistics; the image diagonal in mm is the
largest distance a surface error can have on that grid, so a missed or hallucinated organ counts as
the worst possible HD95 rather than disappearing from the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice, get_confusion_matrix

from attnunet.utils.geometry import bounding_box

# ``uncertainty``: the case's mean predictive entropy (evaluate mode 1, attnunet.inference.ensemble).
METRICS = ("dice", "hd95_mm", "nsd", "precision", "recall", "pred_ml", "ref_ml", "uncertainty")


def score_case(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], labels: dict[int, str], nsd_tolerance_mm: float = 2.0
) -> list[dict[str, Any]]:
    """Metrics for every foreground label of one case.

    Args:
        pred, ref: integer label maps ``(X, Y, Z)`` on the same grid.
        spacing: voxel size in mm per axis.
        labels: ``{index: name}``; index 0 (background) is skipped.
        nsd_tolerance_mm: surface distance tolerated by the normalised surface Dice.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    voxel_ml = math.prod(spacing) / 1000.0
    diagonal = float(np.linalg.norm(np.array(ref.shape) * np.array(spacing)))
    rows = []
    for k, name in sorted(labels.items()):
        if k == 0:
            continue
        p, r = pred == k, ref == k
        row: dict[str, Any] = {"label": name, "pred_ml": p.sum() * voxel_ml, "ref_ml": r.sum() * voxel_ml}
        row.update(_overlap_metrics(p, r, spacing, nsd_tolerance_mm, diagonal))
        rows.append(row)
    return rows


def _overlap_metrics(
    p: np.ndarray, r: np.ndarray, spacing: Sequence[float], tolerance: float, diagonal: float
) -> dict[str, float]:
    has_p, has_r = bool(p.any()), bool(r.any())
    if not has_p and not has_r:
        return {"dice": 1.0, "nsd": 1.0, "hd95_mm": 0.0, "precision": math.nan, "recall": math.nan}
    if not has_p or not has_r:
        return {
            "dice": 0.0,
            "nsd": 0.0,
            "hd95_mm": diagonal,
            "precision": 0.0 if has_p else math.nan,
            "recall": 0.0 if has_r else math.nan,
        }
    # Surface metrics only need the box around both masks (plus one voxel for the border).
    box = bounding_box(p | r, margin=1)
    assert box is not None  # both masks hold voxels (checked above)
    yp = _two_class(p[box])
    yr = _two_class(r[box])
    tp, fp, _, fn = get_confusion_matrix(yp, yr, include_background=False)[0, 0].tolist()
    return {
        "dice": float(compute_dice(yp, yr, include_background=False)[0, 0]),
        "nsd": float(compute_surface_dice(yp, yr, [tolerance], include_background=False, spacing=list(spacing))[0, 0]),
        "hd95_mm": float(
            compute_hausdorff_distance(yp, yr, include_background=False, percentile=95, spacing=list(spacing))[0, 0]
        ),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
    }


def _two_class(mask: np.ndarray) -> torch.Tensor:
    """Boolean ``(X, Y, Z)`` -> one-hot ``(1, 2, X, Y, Z)`` float tensor as MONAI metrics expect."""
    m = torch.from_numpy(np.ascontiguousarray(mask)).float()
    return torch.stack([1 - m, m])[None]


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{label: {metric: {mean, std, median, n}}}`` ignoring undefined (NaN) values."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        summary[label] = {}
        for metric in METRICS:
            values = np.array([r.get(metric, math.nan) for r in rows if r["label"] == label], dtype=float)
            values = values[~np.isnan(values)]
            summary[label][metric] = {
                "mean": float(values.mean()) if len(values) else math.nan,
                "std": float(values.std()) if len(values) else math.nan,
                "median": float(np.median(values)) if len(values) else math.nan,
                "n": int(len(values)),
            }
    return summary
