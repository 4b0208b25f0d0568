"""Evaluate pairs a prediction with its reference as training pairs labels with images: a volume
stored in another voxel order on the same physical grid is scored, a different grid is refused."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from monai import transforms as mt
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform
from omegaconf import OmegaConf

from attnunet.cli.evaluate import evaluate_folders
from attnunet.data.datamodule import SegmentationDataModule
from attnunet.data.transforms import IMAGE, loading
from attnunet.errors import AttnUNetError
from attnunet.evaluation.on_split import evaluate_on_split
from attnunet.evaluation.report import read_label_map, score_pair

LABELS = {0: "background", 1: "pancreas"}
AFFINE = np.array([[1.5, 0, 0, -10.0], [0, 2.0, 0, 5.0], [0, 0, 3.0, 20.0], [0, 0, 0, 1]])


def ras_label() -> nib.Nifti1Image:
    """``(7, 6, 5)`` label in RAS voxel order with an asymmetric blob (a flip or swap moves it)."""
    data = np.zeros((7, 6, 5), np.uint8)
    data[1:3, 1:5, 1:3] = 1
    data[1, 1, 3] = 1
    return nib.Nifti1Image(data, AFFINE)


def stored_as(img: nib.Nifti1Image, axcodes: str) -> nib.Nifti1Image:
    """The same world content in another voxel order (``LPS``, ``PIR``, ...)."""
    return img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt(tuple(axcodes))))


def folders_cfg(tmp_path: Path) -> OmegaConf:
    return OmegaConf.create(
        {
            "pred_dir": str(tmp_path / "preds"),
            "label_dir": str(tmp_path / "labels"),
            "labels": None,
            "merge_labels": None,
            "nsd_tolerance_mm": 2.0,
        }
    )


def write_pair(tmp_path: Path, pred: nib.Nifti1Image, ref: nib.Nifti1Image) -> None:
    for folder, img, name in (("preds", pred, "case_seg.nii.gz"), ("labels", ref, "case.nii.gz")):
        (tmp_path / folder).mkdir(exist_ok=True)
        nib.save(img, tmp_path / folder / name)


@pytest.mark.parametrize("axcodes", ["LPS", "PIR"])
def test_reference_in_another_voxel_order_on_the_same_grid_scores_dice_one(tmp_path: Path, axcodes: str) -> None:
    ref = stored_as(ras_label(), axcodes)
    assert nib.aff2axcodes(ref.affine) == tuple(axcodes)
    assert not np.array_equal(np.asanyarray(ref.dataobj), np.asanyarray(ras_label().dataobj))
    write_pair(tmp_path, ras_label(), ref)
    (row,) = [r for r in evaluate_folders(folders_cfg(tmp_path)) if r["label"] != "background"]
    assert row["dice"] == 1.0 and row["hd95_mm"] == 0.0
    assert row["pred_ml"] == pytest.approx(row["ref_ml"])


def test_prediction_in_another_voxel_order_is_scored_voxel_by_voxel_after_reorienting(tmp_path: Path) -> None:
    """Misses are counted in the right place: a prediction missing one corner voxel of the blob."""
    pred = ras_label()
    data = np.asanyarray(pred.dataobj).copy()
    data[1, 1, 3] = 0
    pred = stored_as(nib.Nifti1Image(data, AFFINE), "LIA")
    ref_path = tmp_path / "ref.nii.gz"
    nib.save(ras_label(), ref_path)
    (row,) = score_pair(
        "case", np.asanyarray(pred.dataobj), pred.affine, tmp_path / "pred.nii.gz", read_label_map(ref_path),
        ref_path, LABELS, 2.0,
    )  # fmt: skip
    tp, ref_voxels = int(data.sum()), int(np.asanyarray(ras_label().dataobj).sum())
    assert row["recall"] == pytest.approx(tp / ref_voxels) and row["precision"] == pytest.approx(1.0)


@pytest.mark.parametrize("axcodes", ["RAS", "LPS"])
def test_a_shifted_grid_is_still_refused_naming_the_file(tmp_path: Path, axcodes: str) -> None:
    shifted = ras_label()
    shifted = nib.Nifti1Image(np.asanyarray(shifted.dataobj), AFFINE + np.array([[0, 0, 0, 1.5]] + [[0] * 4] * 3))
    write_pair(tmp_path, ras_label(), stored_as(shifted, axcodes))
    with pytest.raises(AttnUNetError) as failure:
        evaluate_folders(folders_cfg(tmp_path))
    assert str(failure.value).startswith(f"{tmp_path / 'preds' / 'case_seg.nii.gz'}: prediction affine differs")
    assert "\n" not in str(failure.value)


def test_a_different_shape_is_refused(tmp_path: Path) -> None:
    cropped = nib.Nifti1Image(np.asanyarray(ras_label().dataobj)[:, :, :4], AFFINE)
    write_pair(tmp_path, ras_label(), stored_as(cropped, "PIR"))
    message = r"prediction shape \(6, 5, 7\) \(in the reference's axis order\) != reference shape \(6, 4, 7\)"
    with pytest.raises(AttnUNetError, match=message):
        evaluate_folders(folders_cfg(tmp_path))


class TruthOnTheImageGrid:
    """Stands in for :class:`~attnunet.inference.predictor.Predictor`: "predicts" the true label on
    the grid MONAI reads the image on (the product's loader), as ``Prediction.input_affine`` says."""

    def __init__(self, truth: dict[str, np.ndarray]) -> None:
        self.model = SimpleNamespace(labels=LABELS)
        self.device = torch.device("cpu")
        self.truth = truth
        self.loading = mt.Compose(loading([IMAGE], "RAS"))

    def read(self, image_path: Path) -> dict[str, Any]:
        return {**self.loading({IMAGE: str(image_path)}), "path": str(image_path)}

    def predict(self, data: dict[str, Any]) -> SimpleNamespace:
        meta = data[IMAGE].meta
        labels = self.truth[data["path"]]
        assert tuple(int(n) for n in meta["spatial_shape"]) == labels.shape
        probabilities = np.stack([labels == k for k in sorted(LABELS)]).astype(np.float32)
        affine = np.asarray(meta["original_affine"], dtype=np.float64)
        return SimpleNamespace(
            labels=labels, probabilities_in_box=lambda: probabilities, network_box=None, input_affine=affine
        )


@pytest.mark.parametrize("axcodes", ["RAS", "LPS"])
def test_mode_1_scores_dicom_images_against_nifti_labels_in_any_voxel_order(
    nih_dataset: Path, tmp_path: Path, axcodes: str
) -> None:
    root = tmp_path / "nih"
    shutil.copytree(nih_dataset, root)
    datamodule = SegmentationDataModule(
        str(root), layout="nih", image_dir="Pancreas-CT", label_dir="TCIA_pancreas_labels-02-05-2017"
    )
    cases = datamodule.case_list.cases
    truth = {}
    for case in cases:
        # The fixture's labels share the voxel order MONAI reads its DICOM series in; store them in another.
        label = nib.load(case["label"])
        truth[str(case["image"])] = np.asanyarray(label.dataobj).astype(np.uint8)
        nib.save(stored_as(label, axcodes), case["label"])
    rows = evaluate_on_split(TruthOnTheImageGrid(truth), datamodule, "all", 2.0)
    assert [r["dice"] for r in rows] == [1.0] * len(cases)
