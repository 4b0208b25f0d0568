"""Score cases and write ``metrics.csv``, ``summary.json`` and a printed table."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from attnunet.errors import AttnUNetError
from attnunet.evaluation.metrics import METRICS, score_case, summarise, voxel_spacing

COLUMNS = ("case", "label", *METRICS)


def load_reference(path: Path, labels: dict[int, str]) -> nib.Nifti1Image:
    """A label NIfTI checked to be 3D with integer values inside the label map."""
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
    stray = sorted(set(values.astype(int).tolist()) - set(labels))
    if stray:
        raise AttnUNetError(f"label values {stray[:10]} are not in the label map {sorted(labels)}", path)
    return img


def score_pair(
    case: str,
    pred: np.ndarray,
    pred_path: Path,
    ref_img: nib.Nifti1Image,
    ref_path: Path,
    labels: dict[int, str],
    pred_affine: np.ndarray,
    tolerance_mm: float,
) -> list[dict[str, Any]]:
    """Rows for one case after checking that prediction and reference share one grid."""
    ref = np.asanyarray(ref_img.dataobj).astype(np.int64)
    if pred.shape != ref.shape:
        raise AttnUNetError(f"prediction shape {pred.shape} != reference shape {ref.shape} ({ref_path})", pred_path)
    if not np.allclose(pred_affine, ref_img.affine, atol=1e-3):
        raise AttnUNetError(f"prediction affine differs from the reference affine ({ref_path})", pred_path)
    rows = score_case(pred.astype(np.int64), ref, voxel_spacing(ref_img.affine), labels, tolerance_mm)
    return [{"case": case, **row} for row in rows]


def write_report(rows: Iterable[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """Write ``metrics.csv`` and ``summary.json`` atomically; return the summary."""
    rows = list(rows)
    summary = {"cases": len({r["case"] for r in rows}), "per_label": summarise(rows)}
    _atomic_write(out_dir / "metrics.csv", _csv_text(rows))
    _atomic_write(out_dir / "summary.json", json.dumps(_json_safe(summary), indent=2))
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


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
