"""The one preprocessing definition, on the real abdominal CT and on broken inputs."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai import transforms as mt

from attnunet.data.transforms import PreprocessingSpec, preprocessing
from attnunet.errors import AttnUNetError

DATA = Path(__file__).parent / "data"
CT, MASK = DATA / "abdomen_ct.nii.gz", DATA / "abdomen_pancreas.nii.gz"


def run(spec: PreprocessingSpec, image: Path, label: Path | None = None, num_labels: int | None = 2) -> dict:
    keys = ["image"] if label is None else ["image", "label"]
    data = {"image": str(image)} | ({} if label is None else {"label": str(label)})
    return mt.Compose(preprocessing(spec, keys, num_labels=num_labels))(data)


def save(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


def test_real_ct_is_reoriented_resampled_cropped_and_windowed(tmp_path: Path) -> None:
    spec = PreprocessingSpec(spacing=(2.0, 2.0, 2.0), intensity_window=(-175, 250))
    # Store the same scan as LPS with permuted axes: the result must not depend on the storage.
    img = nib.load(CT)
    lab = nib.load(MASK)
    ornt = nib.orientations.ornt_transform(nib.io_orientation(img.affine), nib.orientations.axcodes2ornt("SLP"))
    moved = [
        save(
            tmp_path / f"{n}.nii.gz",
            nib.orientations.apply_orientation(np.asanyarray(x.dataobj), ornt),
            x.affine @ nib.orientations.inv_ornt_aff(ornt, x.shape),
        )
        for n, x in (("ct", img), ("seg", lab))
    ]
    a = run(spec, CT, MASK)
    b = run(spec, *moved)
    for out in (a, b):
        assert nib.aff2axcodes(out["image"].affine.numpy()) == ("R", "A", "S")
        np.testing.assert_allclose(np.abs(np.diag(out["image"].affine.numpy())[:3]), 2.0, atol=1e-4)
        assert out["image"].dtype == torch.float32 and out["label"].dtype == torch.uint8
        assert float(out["image"].min()) >= 0 and float(out["image"].max()) <= 1
    assert a["image"].shape == b["image"].shape
    torch.testing.assert_close(a["image"].as_tensor(), b["image"].as_tensor(), atol=1e-4, rtol=0)
    assert torch.equal(a["label"].as_tensor(), b["label"].as_tensor())
    # Pancreas volume is preserved by resampling (695 voxels of 27 mm^3 ~ 18.8 mL).
    ml = float((a["label"] > 0).sum()) * 8 / 1000
    assert abs(ml - 695 * 27 / 1000) < 0.2 * 695 * 27 / 1000
    # Cropping to the body removed air around it.
    assert np.prod(a["image"].shape[1:]) < np.prod(img.shape) * (3 / 2) ** 3


@pytest.mark.parametrize(
    "case, message",
    [
        ("nan", "NaN"),
        ("4d", "expected a 3D volume"),
        ("label_value", "outside the label map"),
        ("float_label", "non-integer"),
        ("shape", "label grid"),
        ("affine", "label affine"),
    ],
)
def test_broken_inputs_give_one_clear_error_naming_the_file(tmp_path: Path, case: str, message: str) -> None:
    image = np.zeros((12, 10, 8), np.float32)
    label = np.zeros((12, 10, 8), np.uint8)
    label_affine = None
    if case == "nan":
        image[1, 2, 3] = np.nan
    elif case == "4d":
        image = np.zeros((12, 10, 8, 2), np.float32)
        label = np.zeros((12, 10, 8, 2), np.uint8)
    elif case == "label_value":
        label[0, 0, 0] = 7
    elif case == "float_label":
        label = label.astype(np.float32)
        label[0, 0, 0] = 0.5
    elif case == "shape":
        label = np.zeros((12, 10, 9), np.uint8)
    elif case == "affine":
        label_affine = np.diag([2.0, 1, 1, 1])
    img_path = save(tmp_path / "img.nii.gz", image)
    lab_path = save(tmp_path / "lab.nii.gz", label, label_affine)
    with pytest.raises(RuntimeError, match="applying transform") as info:  # MONAI wraps it; ours is the cause
        run(PreprocessingSpec(spacing=None), img_path, lab_path)
    err = info.value
    while not isinstance(err, AttnUNetError) and err.__cause__ is not None:
        err = err.__cause__  # MONAI wraps transform errors; the cause is ours
    assert isinstance(err, AttnUNetError)
    assert message in str(err)
    expected = img_path if case in ("nan", "4d") else lab_path
    assert str(expected) in str(err) and "\n" not in str(err)


def test_spec_round_trips_as_plain_data() -> None:
    spec = PreprocessingSpec(spacing=(1.5, 1.5, 3.0), intensity_window=(-100, 200), margin=2)
    assert PreprocessingSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError):
        PreprocessingSpec(intensity_window=(10, -10))
