"""Case names: the user's own names survive; only an nnU-Net channel suffix is dropped."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from omegaconf import OmegaConf

from attnunet.cli.evaluate import evaluate_folders
from attnunet.data.datalist import load_cases, split_cases
from attnunet.data.layouts import discover
from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.io import find_inputs
from attnunet.inference.predictor import Predictor
from attnunet.inference.runner import predict_cases
from attnunet.io.naming import case_names
from tests.helpers import CT, make_checkpoint

NUMBERED = ["PANCREAS_0001", "PANCREAS_0002", "PANCREAS_0003"]


def write_volume(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros((6, 6, 6), np.uint8)
    data[1:4, 1:4, 1:4] = value
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def test_numbered_names_are_kept_and_nnunet_channel_is_dropped() -> None:
    assert case_names([f"{n}.nii.gz" for n in NUMBERED]) == NUMBERED
    assert case_names(["amos_0001.nii", "amos_0005.nii"]) == ["amos_0001", "amos_0005"]
    assert case_names(["a/liver_7_0000.nii.gz", "b/case_x_0000.nii.gz"]) == ["liver_7", "case_x"]
    # A set in which not every file carries _0000 is a set of user names, _0000 included.
    assert case_names(["PANCREAS_0000.nii.gz", "PANCREAS_0001.nii.gz"]) == ["PANCREAS_0000", "PANCREAS_0001"]


def test_infer_folder_of_numbered_cases_keeps_their_names(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt", {0: "background", 1: "pancreas"}, spacing=(8.0, 8.0, 8.0))
    img = nib.load(CT)
    small = nib.Nifti1Image(np.asanyarray(img.dataobj)[30:70, 30:70, 40:70], img.affine)
    (tmp_path / "in").mkdir()
    for name in NUMBERED[:2]:
        nib.save(small, tmp_path / "in" / f"{name}.nii.gz")
    cases = find_inputs(tmp_path / "in")
    assert [c for c, _ in cases] == NUMBERED[:2]
    report = predict_cases(Predictor(load_checkpoint(ckpt)), cases, tmp_path / "out")
    assert report.done == NUMBERED[:2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{n}_seg.nii.gz" for n in NUMBERED[:2]]


def test_training_list_keeps_distinct_cases_apart(tmp_path: Path) -> None:
    names = [f"amos_{i:04d}" for i in range(1, 6)]
    for n in names:
        write_volume(tmp_path / "imagesTr" / f"{n}.nii.gz")
        write_volume(tmp_path / "labelsTr" / f"{n}.nii.gz", value=1)
    meta = {
        "labels": {"0": "background", "1": "organ"},
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in names],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    cases = load_cases(tmp_path / "dataset.json")
    assert [c["case_id"] for c in cases] == names
    train, val = split_cases(cases, 0.2, seed=0)
    assert not {c["case_id"] for c in train} & {c["case_id"] for c in val}
    assert len(train) + len(val) == 5

    folder = discover("folder", tmp_path)
    assert [c["case_id"] for c in folder.cases] == names
    assert all(Path(c["image"]).name == Path(c["label"]).name for c in folder.cases)


def test_folder_layout_with_nnunet_channel_pairs_with_plain_labels(tmp_path: Path) -> None:
    for n in ("liver_1", "liver_2"):
        write_volume(tmp_path / "imagesTr" / f"{n}_0000.nii.gz")
        write_volume(tmp_path / "labelsTr" / f"{n}.nii.gz", value=1)
    found = discover("folder", tmp_path)
    assert [c["case_id"] for c in found.cases] == ["liver_1", "liver_2"]


def test_duplicate_case_names_are_refused(tmp_path: Path) -> None:
    write_volume(tmp_path / "in" / "case1.nii")
    write_volume(tmp_path / "in" / "case1.nii.gz")
    with pytest.raises(AttnUNetError, match=r"same case name: \['case1'\]"):
        find_inputs(tmp_path / "in")


def test_evaluate_pairs_numbered_predictions_with_their_labels(tmp_path: Path) -> None:
    for i, n in enumerate(NUMBERED):
        write_volume(tmp_path / "labels" / f"{n}.nii.gz", value=1)
        # Each prediction is right for its own case only: a mixed-up pairing would lower some Dice.
        write_volume(tmp_path / "preds" / f"{n}_seg.nii.gz", value=1 if i != 1 else 0)
    cfg = OmegaConf.create(
        {
            "pred_dir": str(tmp_path / "preds"),
            "label_dir": str(tmp_path / "labels"),
            "labels": None,
            "merge_labels": None,
            "nsd_tolerance_mm": 2.0,
        }
    )
    rows = [r for r in evaluate_folders(cfg) if r["label"] != "background"]
    assert {r["case"]: r["dice"] for r in rows} == {NUMBERED[0]: 1.0, NUMBERED[1]: 0.0, NUMBERED[2]: 1.0}
