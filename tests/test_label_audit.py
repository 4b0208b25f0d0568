"""The label audit on the real CT: flipped and transposed labels are named with their axis, implausible
labels are reported, and the untouched label (and the phantoms) stay clean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attnunet.data.audit_cache import audit_dataset
from attnunet.data.body_landmarks import find_landmarks
from attnunet.data.datalist import load_cases
from attnunet.data.dataset_audit import audit_case, audit_findings
from attnunet.data.fingerprint import LoadedCase, load_pairs
from attnunet.data.label_alignment import (
    AS_STORED,
    CONSENSUS_FLOOR,
    MIN_CONSENSUS,
    consensus_of,
    measure,
    pancreatic_labels,
    penalty,
)
from attnunet.data.label_plausibility import plausibility_findings
from attnunet.data.layouts import discover
from attnunet.phantom import write_dataset
from tests.helpers import BINARY, CT, PANCREAS

TUMOUR = {0: "background", 1: "pancreas", 2: "tumour"}


@pytest.fixture(scope="module")
def real() -> LoadedCase:
    """The real CT and its pancreas label, read through the training checks (RAS, HU)."""
    [(_, loaded)] = load_pairs([{"image": str(CT), "label": str(PANCREAS), "case_id": "real"}], num_labels=2)
    assert isinstance(loaded, LoadedCase)
    return loaded


def findings_of(case: LoadedCase, names: dict[int, str] = BINARY) -> list:
    return audit_findings({"nih0002": audit_case(case, names)}, names)


def with_label(case: LoadedCase, label: np.ndarray, image: np.ndarray | None = None) -> LoadedCase:
    return LoadedCase(case.image if image is None else image, np.ascontiguousarray(label), case.spacing)


def test_the_real_label_as_stored_is_clean(real: LoadedCase) -> None:
    assert findings_of(real) == []


@pytest.mark.parametrize("axis, name", [(0, "x (R-L)"), (1, "y (A-P)"), (2, "z (S-I)")])
def test_a_label_flipped_along_each_axis_is_named_with_that_axis(real: LoadedCase, axis: int, name: str) -> None:
    flipped = with_label(real, np.flip(real.label, axis))
    [finding] = [f for f in findings_of(flipped) if f.check == "label_misaligned"]
    assert finding.case == "nih0002" and finding.severity == "error"
    assert finding.message.startswith(f"label fits the image far better flipped along {name}")
    assert "stored mirrored?" in finding.message
    # The other direction: flipping it back is what the audit proposes, and that label is clean.
    assert findings_of(with_label(real, np.flip(flipped.label, axis))) == []


def test_an_image_flipped_against_its_label_is_found_too(real: LoadedCase) -> None:
    """The defect seen from the other side: the CT mirrored front to back, the label as it was."""
    mirrored = with_label(real, real.label, image=np.ascontiguousarray(np.flip(real.image, 1)))
    [finding] = [f for f in findings_of(mirrored) if f.check == "label_misaligned"]
    assert "flipped along y (A-P)" in finding.message


def test_a_transposed_label_is_found_on_a_square_grid(real: LoadedCase) -> None:
    n = min(real.image.shape[:2])
    square = LoadedCase(real.image[:n, :n].copy(), real.label[:n, :n].copy(), real.spacing)
    assert findings_of(square) == []
    [finding] = [f for f in findings_of(with_label(square, square.label.transpose(1, 0, 2))) if f.severity == "error"]
    assert (
        finding.check == "label_misaligned" and "transposed" in finding.message and "x and y swapped" in finding.message
    )


def test_multi_label_sets_are_audited_with_every_label(real: LoadedCase) -> None:
    """A tumour inside the pancreas (MSD's label 2) moves with it: flipped, it is found; as stored, clean."""
    label = real.label.copy()
    voxels = np.argwhere(label == 1)
    centre = voxels[len(voxels) // 2]  # a voxel of the pancreas (its centroid may lie outside the curve)
    label[tuple(voxels[np.linalg.norm(voxels - centre, axis=1) < 3].T)] = 2
    assert np.count_nonzero(label == 2) > 20
    assert findings_of(with_label(real, label), TUMOUR) == []
    flipped = findings_of(with_label(real, np.flip(label, 1)), TUMOUR)
    assert [f.check for f in flipped if f.severity == "error"] == ["label_misaligned"]
    assert pancreatic_labels(TUMOUR) == [1, 2]


def test_a_flip_that_keeps_a_soft_tissue_median_is_still_found_by_position(real: LoadedCase) -> None:
    """The case of the issue: the flipped label's HU median stays soft tissue, its place gives it away."""
    landmarks = find_landmarks(real.image, real.spacing)
    options = measure(real.image, real.label, landmarks, [1])
    flipped = options["flipped along y (A-P)"]
    assert -30 < flipped["hu_median"] < 100  # a plain HU test would pass it
    assert options[AS_STORED]["anterior_mm"] > 45 > flipped["anterior_mm"]  # in front of the spine only as stored
    assert flipped["spine"] > 0.05 and options[AS_STORED]["spine"] == 0


def test_empty_tiny_and_outside_labels_are_errors(real: LoadedCase) -> None:
    empty = findings_of(with_label(real, np.zeros_like(real.label)))
    assert [(f.check, f.severity) for f in empty] == [("label_empty", "error")]

    tiny = np.zeros_like(real.label)
    tiny[tuple(np.argwhere(real.label == 1)[:5].T)] = 1
    [finding] = [f for f in findings_of(with_label(real, tiny)) if f.check == "label_tiny"]
    assert finding.severity == "error" and "5 voxels" in finding.message

    outside = np.zeros_like(real.label)  # a pancreas-sized block moved into the air beside the body
    outside[0:8, 90:98, 85:93] = 1
    assert (real.image[outside == 1] < -500).mean() > 0.9, "the block must lie in air"
    checks = {f.check: f for f in findings_of(with_label(real, outside))}
    outside_body = checks["label_outside_body"]
    assert outside_body.severity == "error" and "outside the body" in outside_body.message


def test_a_far_apart_piece_is_a_warning(real: LoadedCase) -> None:
    label = real.label.copy()
    piece = np.argwhere(real.label == 1)[:150].copy()
    piece[:, 2] -= 40  # 120 mm below, in the lower abdomen
    label[tuple(piece.T)] = 1
    [finding] = [f for f in findings_of(with_label(real, label)) if f.check == "label_pieces"]
    assert finding.severity == "warning" and "mm from its main part" in finding.message


def test_a_volume_far_from_the_dataset_median_is_a_warning() -> None:
    def stats(ml: float) -> dict:
        return {"voxels": 1000, "organ_ml": ml, "labels": {}}

    measured = {f"case{i}": stats(ml) for i, ml in enumerate([60, 70, 80, 75, 65])}
    assert plausibility_findings(measured, BINARY) == []
    measured["big"] = stats(290.0)  # inside the absolute range, but 4x the others
    [finding] = plausibility_findings(measured, BINARY)
    assert finding.case == "big" and finding.check == "label_volume" and "median" in finding.message


def test_consensus_penalises_features_far_from_the_other_cases(real: LoadedCase) -> None:
    landmarks = find_landmarks(real.image, real.spacing)
    stored = measure(real.image, real.label, landmarks, [1])[AS_STORED]
    alike = consensus_of([stored] * MIN_CONSENSUS)
    assert consensus_of([stored] * (MIN_CONSENSUS - 1)) is None  # too few cases: no consensus
    assert penalty(stored, alike)["consensus"] == 0
    darker = {**stored, "hu_median": stored["hu_median"] - 5 * CONSENSUS_FLOOR["hu_median"]}  # 5 spreads off
    assert penalty(darker, alike)["consensus"] == pytest.approx(1.0)
    assert penalty(darker)["hu"] == penalty(stored)["hu"]  # without the other cases nothing tells


def test_phantoms_of_the_default_generator_raise_no_finding(tiny_dataset: Path) -> None:
    cases = load_cases(tiny_dataset / "dataset.json")
    names = {int(k): v for k, v in json.loads((tiny_dataset / "dataset.json").read_text())["labels"].items()}
    audits = {case_id: audit_case(loaded, names) for case_id, loaded in load_pairs(cases, len(names))}
    assert len(audits) == 4
    assert audit_findings(audits, names) == []


@pytest.mark.slow
def test_the_default_phantom_set_raises_no_finding(tmp_path: Path) -> None:
    """Every case of the default synthetic set (32 phantoms, seed 0), through the audit training runs."""
    write_dataset(tmp_path / "ds", num_cases=32, seed=0)
    dataset = discover("auto", tmp_path / "ds")
    assert len(dataset.cases) == 32
    assert audit_dataset(dataset.cases, dataset.labels, cache_dir=None) == []
