"""The dataset audit: every case measured once, then judged against the others.

Per case (:func:`audit_case`, cacheable): the label's fit as stored and flipped/transposed
(:mod:`~attnunet.data.label_alignment`), its volume, pieces and place in the body
(:mod:`~attnunet.data.label_plausibility`) and a signature of the scan
(:mod:`~attnunet.data.duplicates`). Over the dataset (:func:`audit_findings`): the findings, each
with a severity, and the cases the suggested settings must leave out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai import transforms as mt

from attnunet.data import label_alignment, label_plausibility
from attnunet.data.body_landmarks import find_landmarks
from attnunet.data.duplicates import ScanSignature, duplicate_findings, leak_findings, signature
from attnunet.data.findings import Finding
from attnunet.data.fingerprint import LoadedCase
from attnunet.data.label_alignment import Placement
from attnunet.data.transforms import IMAGE, loading
from attnunet.errors import AttnUNetError
from attnunet.io.dicom import dicom_series_dirs
from attnunet.io.naming import case_names, is_nifti
from attnunet.utils.geometry import voxel_spacing


@dataclass(frozen=True)
class CaseAudit:
    """What the audit measured on one case.

    Attributes:
        placements: label features per placement (:func:`attnunet.data.label_alignment.measure`).
        labels: volumes, outside shares and pieces (:func:`attnunet.data.label_plausibility.measure`).
        signature: the scan's signature for duplicate and leak detection.
    """

    placements: dict[str, Placement]
    labels: dict[str, Any]
    signature: ScanSignature


def audit_case(case: LoadedCase, names: Mapping[int, str]) -> CaseAudit:
    """Measure one image/label pair (RAS, HU) with the label map ``names``."""
    landmarks = find_landmarks(case.image, case.spacing)
    organ = label_alignment.pancreatic_labels(names)
    return CaseAudit(
        label_alignment.measure(case.image, case.label, landmarks, organ),
        label_plausibility.measure(case.label, case.spacing, landmarks, names, organ),
        signature(case.image, case.spacing),
    )


def audit_findings(
    audits: Mapping[str, CaseAudit],
    names: Mapping[int, str],
    test_scans: Mapping[str, ScanSignature] | None = None,
) -> list[Finding]:
    """Every finding of the dataset, sorted by case: misaligned and implausible labels, duplicate
    scans and, with ``test_scans``, training scans that are also in the test set."""
    findings = label_alignment.alignment_findings({c: a.placements for c, a in audits.items()})
    findings += label_plausibility.plausibility_findings({c: a.labels for c, a in audits.items()}, names)
    signatures = {c: a.signature for c, a in audits.items()}
    findings += duplicate_findings(signatures)
    if test_scans:
        findings += leak_findings(signatures, test_scans)
    return sorted(findings, key=Finding.order)


def left_out(findings: list[Finding]) -> dict[str, str]:
    """``{case: checks}`` of the cases whose statistics must not shape suggested settings: every
    case with a finding (a duplicate's finding sits on its second copy, so one copy still counts)."""
    out: dict[str, list[str]] = {}
    for f in findings:
        out.setdefault(f.case, [])
        if f.check not in out[f.case]:
            out[f.case].append(f.check)
    return {case: ", ".join(checks) for case, checks in out.items()}


def scan_signatures(root: Path) -> dict[str, ScanSignature]:
    """Signatures of every scan below ``root`` (NIfTI files and DICOM series folders, found
    recursively), named as the case lists name cases; for comparing a training set with a test set."""
    if not root.is_dir():
        raise AttnUNetError("test set folder does not exist", root)
    scans = sorted(p for p in root.rglob("*") if is_nifti(p)) + dicom_series_dirs(root)
    if not scans:
        raise AttnUNetError("no NIfTI images or DICOM series found", root)
    load = mt.Compose([*loading([IMAGE], "RAS"), mt.SqueezeDimd(IMAGE, dim=0)])
    out = {}
    for path, name in zip(scans, case_names(scans)):
        image = load({IMAGE: str(path)})[IMAGE]
        out[name] = signature(np.asarray(image), np.array(voxel_spacing(image.affine)))
    return out
