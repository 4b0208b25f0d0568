"""The synthetic pancreas-style CT generator."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from attnunet.data.synthetic import make_case, reorient, write_dataset


def test_same_seed_same_case_other_seed_other_case() -> None:
    a_img, a_lab, a_aff = make_case(seed=1, index=0)
    b_img, b_lab, b_aff = make_case(seed=1, index=0)
    c_img, c_lab, _ = make_case(seed=2, index=0)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    np.testing.assert_array_equal(a_aff, b_aff)
    assert a_img.shape != c_img.shape or not np.array_equal(a_img, c_img)


def test_case_is_abdominal_ct_in_hounsfield_units() -> None:
    image, label, affine = make_case(seed=0, index=1)
    assert image.dtype == np.int16 and label.dtype == np.uint8
    assert image.min() <= -900 and image.max() >= 400  # air/gas and bone
    assert set(np.unique(label)) == {0, 1}
    pancreas_ml = (label == 1).sum() * abs(np.linalg.det(affine[:3, :3])) / 1000
    assert 15 < pancreas_ml < 200  # adult pancreas volumes are roughly 40-120 mL
    spacing = np.abs(np.diag(affine)[:3])
    assert spacing[2] > spacing[0]  # thicker slices than in-plane pixels


def test_pancreas_is_not_found_by_any_single_intensity_window() -> None:
    image, label, _ = make_case(seed=0, index=2)
    pancreas = label == 1
    best = 0.0
    for lo in range(-100, 200, 10):
        for hi in range(lo + 10, 260, 10):
            pred = (image >= lo) & (image < hi)
            dice = 2 * (pred & pancreas).sum() / (pred.sum() + pancreas.sum())
            best = max(best, dice)
    assert best < 0.3


def test_lesions_lie_inside_the_pancreas_region() -> None:
    labels = [make_case(seed=0, index=i, lesions=True)[1] for i in range(4)]
    assert any((lab == 2).any() for lab in labels)
    for lab in labels:
        assert set(np.unique(lab)) <= {0, 1, 2}


def test_reorient_keeps_world_coordinates() -> None:
    image, label, affine = make_case(seed=0, index=3)
    for code in ("LPS", "SRA", "PLI"):
        img2, lab2, aff2 = reorient(image, label, affine, code)
        assert nib.aff2axcodes(aff2) == tuple(code)
        # The world position of a labelled voxel is the same in both storages.
        idx = np.argwhere(lab2 == 1)[0]
        world = aff2 @ np.r_[idx, 1]
        back = np.rint(np.linalg.inv(affine) @ world)[:3].astype(int)
        assert label[tuple(back)] == 1 and image[tuple(back)] == img2[tuple(idx)]


def test_dataset_layout_orientation_variety_and_atomic_write(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    meta_path = write_dataset(root, num_cases=6, seed=0)
    meta = json.loads(meta_path.read_text())
    assert meta["labels"] == {"0": "background", "1": "pancreas"}
    assert meta["numTraining"] == 6 == len(meta["training"])
    codes, spacings = set(), set()
    for entry in meta["training"]:
        img = nib.load(root / entry["image"])
        lab = nib.load(root / entry["label"])
        assert img.shape == lab.shape
        np.testing.assert_allclose(img.affine, lab.affine)
        assert img.header.get_data_dtype() == np.int16
        codes.add(nib.aff2axcodes(img.affine))
        spacings.add(tuple(np.round(img.header.get_zooms(), 2)))
    assert len(codes) >= 3 and codes != {("R", "A", "S")}
    assert len(spacings) >= 3
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary folder left behind
    with pytest.raises(FileExistsError):
        write_dataset(root, num_cases=1)
