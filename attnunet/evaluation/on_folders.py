"""Score existing predictions against reference labels, matched by case name (``attnunet-evaluate
pred_dir= label_dir=``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from attnunet.errors import AttnUNetError
from attnunet.evaluation.report import LabelMap, check_label_values, read_label_map, relabelled, score_pair
from attnunet.inference.outputs import predicted_case
from attnunet.io.naming import is_nifti, stem


def score_folders(
    pred_dir: str | Path,
    label_dir: str | Path,
    nsd_tolerance_mm: float,
    labels: Mapping[int, str] | None = None,
    merge_labels: Mapping[int, int] | None = None,
) -> list[dict[str, Any]]:
    """One metrics row per case and label: ``<case>_seg.nii.gz`` (or ``<case>.nii.gz``) in ``pred_dir``
    against ``<case>.nii.gz`` in ``label_dir``.

    Args:
        nsd_tolerance_mm: boundary tolerance of the normalised surface Dice (mm).
        labels: ``{value: name}`` to score; None: every value found in either volume of a case.
        merge_labels: reference value -> scored value (e.g. lesion into pancreas); None: as stored.

    Raises:
        AttnUNetError: a folder is missing, a labelled case has no prediction, or a volume holds
            values outside ``labels``.
    """
    pred_dir, label_dir = Path(pred_dir).expanduser(), Path(label_dir).expanduser()
    for folder in (pred_dir, label_dir):
        if not folder.is_dir():
            raise AttnUNetError("not a folder", folder)
    preds = {case: p for p in sorted(pred_dir.iterdir()) if is_nifti(p) and (case := predicted_case(p)) is not None}
    refs = {stem(p): p for p in sorted(label_dir.iterdir()) if is_nifti(p)}
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise AttnUNetError(f"no prediction for {len(missing)} labelled cases, e.g. {missing[:3]}", pred_dir)
    lookup = dict(merge_labels) if merge_labels else None
    rows = []
    for case in tqdm(sorted(refs), desc="cases", unit="case"):
        ref, pred = relabelled(read_label_map(refs[case]), lookup), read_label_map(preds[case])
        case_labels = dict(labels) if labels else labels_found(ref, pred)
        check_label_values(ref, case_labels, refs[case])
        check_label_values(pred, case_labels, preds[case])
        rows += score_pair(case, pred.array, pred.affine, preds[case], ref, refs[case], case_labels, nsd_tolerance_mm)
    return rows


def labels_found(*maps: LabelMap) -> dict[int, str]:
    """``{value: name}`` of every non-negative value in ``maps`` and background (names ``label<v>``)."""
    values = {v for m in maps for v in m.values if v >= 0} | {0}
    return {v: ("background" if v == 0 else f"label{v}") for v in sorted(values)}
