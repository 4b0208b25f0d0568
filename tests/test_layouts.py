"""Dataset layouts (MSD, nnU-Net v1/v2, plain folders, NIH Pancreas-CT), label merging, grid checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai import transforms as mt

from attnunet.data.datamodule import SegmentationDataModule
from attnunet.data.labels import merge_labels
from attnunet.data.layouts import discover
from attnunet.data.transforms import PreprocessingSpec, load_images, preprocessing
from attnunet.errors import AttnUNetError, user_error
from attnunet.io.dicom_writer import write_series
from attnunet.phantom import reorient, write_dataset

NIH = {"image_dir": "Pancreas-CT", "label_dir": "TCIA_pancreas_labels-02-05-2017"}


@pytest.fixture(scope="module")
def nnunet_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layouts") / "Dataset007_Pancreas"
    write_dataset(root, num_cases=2, seed=5, lesions=True, layout="nnunet")
    return root


def preprocess(case: dict, num_labels: int = 2, lookup: dict[int, int] | None = None) -> dict:
    return mt.Compose(preprocessing(PreprocessingSpec(), num_labels=num_labels, label_lookup=lookup))(case)


def test_nnunet_v2_layout_is_detected_with_its_label_names(nnunet_dataset: Path) -> None:
    assert "training" not in json.loads((nnunet_dataset / "dataset.json").read_text())
    found = discover("auto", nnunet_dataset)
    assert found.labels == {0: "background", 1: "pancreas", 2: "lesion"}
    assert [c["case_id"] for c in found.cases] == ["synth_000", "synth_001"]
    assert all(
        c["image"].endswith("_0000.nii.gz") and Path(c["label"]).name == f"{c['case_id']}.nii.gz" for c in found.cases
    )


def test_nnunet_v1_list_finds_the_channel_files(nnunet_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "v1"
    shutil.copytree(nnunet_dataset, root)
    training = [{"image": f"./imagesTr/synth_00{i}.nii.gz", "label": f"./labelsTr/synth_00{i}.nii.gz"} for i in (0, 1)]
    meta = {"labels": {"0": "background", "1": "pancreas", "2": "lesion"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(meta))
    found = discover("auto", root)
    assert [Path(c["image"]).name for c in found.cases] == ["synth_000_0000.nii.gz", "synth_001_0000.nii.gz"]


def test_nnunet_problems_are_named(nnunet_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    shutil.copytree(nnunet_dataset, root)
    (root / "labelsTr" / "synth_001.nii.gz").unlink()
    with pytest.raises(AttnUNetError, match="synth_001_0000.nii.gz: no label synth_001.nii.gz"):
        discover("nnunet", root)
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "labels": {"background": 0, "organ": [1, 2]}}))
    with pytest.raises(AttnUNetError, match="regions are not supported"):
        discover("nnunet", root)


def test_folder_layout_pairs_by_name_and_skips_hidden_and_unlabelled(nnunet_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "plain"
    shutil.copytree(nnunet_dataset / "imagesTr", root / "images")
    shutil.copytree(nnunet_dataset / "labelsTr", root / "labels")
    (root / "images" / "._synth_000_0000.nii.gz").write_bytes(b"\0\5\26\7")  # macOS resource fork copy
    (root / "labels" / "synth_001.nii.gz").unlink()
    found = discover("folder", root, image_dir="images", label_dir="labels", label_names={0: "bg", 1: "pancreas"})
    assert [c["case_id"] for c in found.cases] == ["synth_000"]
    assert found.labels == {0: "bg", 1: "pancreas"}
    (root / "labels" / "synth_000.nii.gz").unlink()
    with pytest.raises(AttnUNetError, match="no image with a matching label"):
        discover("folder", root, image_dir="images", label_dir="labels")


def test_nih_layout_matches_patients_to_labels_by_number(nih_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "nih"
    shutil.copytree(nih_dataset, root)
    (root / NIH["label_dir"] / "label0002.nii.gz").unlink()  # NIH has patients without labels
    found = discover("nih", root, **NIH)
    assert [c["case_id"] for c in found.cases] == ["PANCREAS_0001", "PANCREAS_0003"]
    assert all(
        Path(c["image"]).is_dir() and Path(c["label"]).name == f"label{c['case_id'][-4:]}.nii.gz" for c in found.cases
    )
    second = root / NIH["image_dir"] / "PANCREAS_0003" / "other-study" / "other-series"
    shutil.copytree(Path(found.cases[1]["image"]), second)
    with pytest.raises(
        AttnUNetError, match="PANCREAS_0003: expected one DICOM series below the patient folder, found 2"
    ):
        discover("nih", root, **NIH)


def test_every_layout_gives_the_same_network_input(tiny_dataset: Path, tmp_path: Path) -> None:
    """The same scan as NIfTI (MSD and nnU-Net names, another voxel order) and as a DICOM series
    with a canonical label becomes the same preprocessed tensors."""
    write_dataset(tmp_path / "msd", num_cases=1, seed=5)
    write_dataset(tmp_path / "nnunet", num_cases=1, seed=5, layout="nnunet")
    write_dataset(tmp_path / "nih", num_cases=1, seed=5, layout="nih")
    outs = [
        preprocess(discover("auto", tmp_path / "msd").cases[0]),
        preprocess(discover("auto", tmp_path / "nnunet").cases[0]),
        preprocess(discover("nih", tmp_path / "nih", **NIH).cases[0]),
    ]
    for other in outs[1:]:
        assert other["image"].shape == outs[0]["image"].shape
        assert torch.allclose(other["image"], outs[0]["image"], atol=1e-4)
        assert torch.equal(other["label"], outs[0]["label"])
    assert outs[0]["label"].sum() > 100


def test_label_stored_in_another_voxel_order_is_accepted_but_a_shifted_one_is_not(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", num_cases=1, seed=5)
    case = discover("auto", tmp_path / "ds").cases[0]
    image, label = nib.load(case["image"]), nib.load(case["label"])
    data, lab, affine = reorient(np.asarray(image.dataobj), np.asarray(label.dataobj), image.affine, "SPL")
    flipped = tmp_path / "flipped.nii.gz"
    nib.save(nib.Nifti1Image(lab, affine), flipped)
    reference = preprocess(case)
    assert torch.equal(preprocess({**case, "label": str(flipped)})["label"], reference["label"])
    shifted = tmp_path / "shifted.nii.gz"
    moved = label.affine.copy()
    moved[:3, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj), moved), shifted)
    with pytest.raises(RuntimeError, match="applying transform") as failure:  # MONAI wraps it; ours is the cause
        preprocess({**case, "label": str(shifted)})
    assert "shifted.nii.gz: label affine differs from the image affine" in str(user_error(failure.value))


def test_merge_labels_maps_values_and_names(tiny_dataset: Path) -> None:
    names = {0: "background", 1: "pancreas", 2: "lesion"}
    assert merge_labels(names, {2: 1}) == ({0: "background", 1: "pancreas"}, {0: 0, 1: 1, 2: 1})
    assert merge_labels(names, {1: 2}) == ({0: "background", 1: "lesion"}, {0: 0, 1: 1, 2: 1})
    assert merge_labels(names, None) == (names, {0: 0, 1: 1, 2: 2})
    for bad in ({0: 1}, {3: 1}, {2: 1, 1: 0}):
        with pytest.raises(AttnUNetError, match="merge_labels"):
            merge_labels(names, bad)
    with_lesion = [
        (case, raw)
        for case in discover("auto", tiny_dataset).cases
        if 2 in (raw := preprocess(case, num_labels=3)["label"]).unique().tolist()
    ]
    assert with_lesion, "the lesion fixture has no case with a lesion"
    case, raw = with_lesion[0]
    merged = preprocess(case, num_labels=3, lookup={0: 0, 1: 1, 2: 1})["label"]
    assert merged.unique().tolist() == [0, 1]
    assert torch.equal(merged, (raw > 0).to(merged.dtype))


def test_dicom_series_writer_round_trips_geometry(tiny_dataset: Path, tmp_path: Path) -> None:
    image_path = discover("auto", tiny_dataset).cases[0]["image"]
    series = write_series(Path(image_path), tmp_path / "series")
    loaded = load_images(["image"])({"image": str(series)})["image"]
    canonical = nib.as_closest_canonical(nib.load(image_path))
    assert tuple(loaded.shape) == canonical.shape
    assert np.allclose(np.asarray(loaded.affine), canonical.affine, atol=1e-3)


def test_dataset_json_may_be_an_absolute_path_elsewhere(tiny_dataset: Path, tmp_path: Path) -> None:
    dm = SegmentationDataModule(root=str(tmp_path), dataset_json=str(tiny_dataset / "dataset.json"))
    assert len(dm.case_list.cases) == 4 and dm.case_list.source == tiny_dataset / "dataset.json"
