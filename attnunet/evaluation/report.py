"""Score cases and write ``metrics.csv``, ``summary.json`` and a printed table."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from attnunet.data.labels import apply_lookup
from attnunet.errors import AttnUNetError
from attnunet.evaluation.metrics import METRICS, score_case, summarise
from attnunet.utils.atomic import write_text_atomically
from attnunet.utils.geometry import voxel_spacing

COLUMNS = ("case", "label", *METRICS)


@dataclass(frozen=True)
class LabelMap:
    """A label volume read once: voxels ``(X, Y, Z)`` int64, its affine and its distinct values."""

    array: np.ndarray
    affine: np.ndarray
    values: tuple[int, ...]


def read_label_map(path: Path) -> LabelMap:
    """Read a label NIfTI checked to be 3D with integer values."""
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for broken files
        raise AttnUNetError(f"unreadable NIfTI ({type(e).__name__})", path) from None
    if data.ndim != 3:
        raise AttnUNetError(f"expected a 3D label map, got shape {data.shape}", path)
    values = np.unique(data)
    if not np.all(values == np.round(values)):
        raise AttnUNetError("label map has non-integer values", path)
    return LabelMap(data.astype(np.int64), np.asarray(img.affine), tuple(int(v) for v in values))


def relabelled(label_map: LabelMap, lookup: dict[int, int] | None) -> LabelMap:
    """``label_map`` with merged classes (``lookup``: old value -> new value, see ``data.labels``)."""
    if not lookup or all(k == v for k, v in lookup.items()):
        return label_map
    array = apply_lookup(label_map.array, lookup)
    return LabelMap(array, label_map.affine, tuple(int(v) for v in np.unique(array)))


def check_label_values(label_map: LabelMap, labels: dict[int, str], path: Path) -> None:
    """Every value of ``label_map`` must be a key of ``labels``."""
    stray = sorted(set(label_map.values) - set(labels))
    if stray:
        raise AttnUNetError(f"label values {stray[:10]} are not in the label map {sorted(labels)}", path)


def score_pair(
    case: str,
    pred: np.ndarray,
    pred_affine: np.ndarray,
    pred_path: Path,
    ref: LabelMap,
    ref_path: Path,
    labels: dict[int, str],
    tolerance_mm: float,
) -> list[dict[str, Any]]:
    """Rows for one case after checking that prediction ``(X, Y, Z)`` and reference share one grid
    (see :func:`on_reference_grid`)."""
    pred = on_reference_grid(pred, pred_affine, pred_path, ref, ref_path)
    rows = score_case(pred.astype(np.int64), ref.array, voxel_spacing(ref.affine), labels, tolerance_mm)
    return [{"case": case, **row} for row in rows]


def on_reference_grid(
    pred: np.ndarray, pred_affine: np.ndarray, pred_path: Path, ref: LabelMap, ref_path: Path
) -> np.ndarray:
    """``pred`` ``(X, Y, Z)`` in the reference's voxel order, refused unless both describe one grid.

    As training's check of labels against images: a volume stored in another axis order or
    direction (a label saved LPS against a RAS prediction, a DICOM series read in another order than
    its NIfTI label) is the same grid once both are reoriented alike, so ``pred``'s axes are
    permuted and flipped onto the reference's. After that the shapes must match and the affines
    agree within 1e-3 mm; anything else is a different grid.
    """
    reoriented, affine = pred, np.asarray(pred_affine, dtype=np.float64)
    start, end = io_orientation(affine), io_orientation(ref.affine)
    if not (np.isnan(start).any() or np.isnan(end).any()):  # a degenerate affine is compared as stored
        transform = ornt_transform(start, end)
        reoriented = apply_orientation(pred, transform)
        affine = affine @ inv_ornt_aff(transform, pred.shape)
    if reoriented.shape != ref.array.shape:
        raise AttnUNetError(
            f"prediction shape {reoriented.shape} (in the reference's axis order) != reference shape "
            f"{ref.array.shape} ({ref_path})",
            pred_path,
        )
    if not np.allclose(affine, ref.affine, atol=1e-3):
        raise AttnUNetError(f"prediction affine differs from the reference affine ({ref_path})", pred_path)
    return reoriented


def write_report(rows: Iterable[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """Write ``metrics.csv`` and ``summary.json`` atomically; return the summary."""
    rows = list(rows)
    summary = {"cases": len({r["case"] for r in rows}), "per_label": summarise(rows)}
    write_text_atomically(out_dir / "metrics.csv", _csv_text(rows))
    write_text_atomically(out_dir / "summary.json", json.dumps(_json_safe(summary), indent=2))
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """Mean ± std per label and metric as a fixed-width table."""
    lines = [f"{'label':<12}" + "".join(f"{m:>18}" for m in METRICS)]
    for label, metrics in summary["per_label"].items():
        cells = []
        for m in METRICS:
            s = metrics[m]
            cells.append(f"{'n/a':>18}" if math.isnan(s["mean"]) else f"{s['mean']:>10.3f} ± {s['std']:<5.3f}")
        lines.append(f"{label:<12}" + "".join(cells))
    return "\n".join(lines)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
