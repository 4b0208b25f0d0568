"""The same scan under another name is found however it was re-saved; different scans are not matched."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from attnunet.data.dataset_audit import scan_signatures
from attnunet.data.duplicates import compare, duplicate_findings, leak_findings, signature
from attnunet.errors import AttnUNetError
from tests.helpers import CT

SPACING = np.array([3.0, 3.0, 3.0])


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    """The real CT ``(X, Y, Z)`` in HU, RAS as stored."""
    return np.asarray(nib.load(CT).dataobj, dtype=np.float32)


def resaved(ct: np.ndarray) -> dict[str, np.ndarray]:
    """The CT as a copy re-saved in the ways real datasets hold duplicates."""
    noise = np.random.default_rng(0).normal(0, 10, ct.shape).astype(np.float32)
    return {
        "int16": ct.astype(np.int16).astype(np.float32),
        "rescaled float": (ct * 0.5).astype(np.float32) * 2,
        "cropped by 5 slices": ct[:, :, 3:-2],
        "lightly re-compressed": np.round(ct + noise),
    }


@pytest.mark.parametrize("how", ["int16", "rescaled float", "cropped by 5 slices", "lightly re-compressed"])
def test_a_resaved_copy_is_the_same_scan(ct: np.ndarray, how: str) -> None:
    copy = resaved(ct)[how]
    match = compare(signature(ct, SPACING), signature(copy, SPACING))
    assert match is not None and match == compare(signature(copy, SPACING), signature(ct, SPACING))
    assert match.identical == (how in ("int16", "rescaled float"))
    assert match.shared == copy.shape[2]


def test_different_scans_on_the_same_grid_are_not_matched(ct: np.ndarray) -> None:
    """The same patient shifted by 3 cm in the field of view, and mirrored left to right, are other
    images: the block means move by far more than the threshold."""
    shifted = np.full_like(ct, -1024.0)
    shifted[10:] = ct[:-10]
    mirrored = np.ascontiguousarray(ct[::-1])
    for other in (shifted, mirrored):
        assert compare(signature(ct, SPACING), signature(other, SPACING)) is None
    assert compare(signature(ct, SPACING), signature(ct, SPACING * 1.1)) is None  # another grid


def test_duplicates_are_reported_on_the_later_case_naming_the_first(ct: np.ndarray) -> None:
    shifted = np.full_like(ct, -1024.0)
    shifted[10:] = ct[:-10]
    sigs = {"nih0025": signature(ct, SPACING), "nih0070": signature(ct[:, :, 2:], SPACING)}
    sigs["nih0003"] = signature(shifted, SPACING)
    [finding] = duplicate_findings(sigs)
    assert (finding.case, finding.severity, finding.check) == ("nih0070", "warning", "duplicate")
    assert finding.message.startswith("same scan as nih0025 (110 slices in common")


def test_a_training_scan_in_the_test_set_is_a_leak(ct: np.ndarray) -> None:
    train = {"case1": signature(ct, SPACING)}
    [finding] = leak_findings(train, {"test7": signature(ct.astype(np.int16).astype(np.float32), SPACING)})
    assert (finding.case, finding.severity, finding.check) == ("case1", "error", "test_leak")
    assert "test case test7 (identical voxels)" in finding.message


def test_test_set_scans_are_read_reoriented_from_a_folder(ct: np.ndarray, tmp_path: Path) -> None:
    """A copy stored in another orientation (LPS, int16) is matched once both are read as RAS."""
    img = nib.load(CT)
    lps = img.as_reoriented(np.array([[0, -1], [1, -1], [2, 1]]))
    assert nib.aff2axcodes(lps.affine) == ("L", "P", "S")
    (tmp_path / "imagesTs").mkdir()
    nib.save(
        nib.Nifti1Image(np.asanyarray(lps.dataobj).astype(np.int16), lps.affine), tmp_path / "imagesTs" / "x.nii.gz"
    )
    scans = scan_signatures(tmp_path)
    assert list(scans) == ["x"]
    match = compare(signature(ct, SPACING), scans["x"])
    assert match is not None and match.identical


def test_a_test_folder_without_scans_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AttnUNetError, match="no NIfTI images or DICOM series found"):
        scan_signatures(tmp_path)
    with pytest.raises(AttnUNetError, match="test set folder does not exist"):
        scan_signatures(tmp_path / "missing")
