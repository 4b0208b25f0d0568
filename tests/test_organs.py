"""Organ classes on the phantoms (data.organs), patches that still centre on the pancreas, and
models with more classes scored on a dataset's classes by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from attnunet.data.labels import apply_lookup, lookup_by_name
from attnunet.data.transforms import LABEL, PositiveIndicesd
from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.phantom import write_dataset
from attnunet.phantom.canvas import Tissue
from attnunet.phantom.organs import ORGAN_TISSUES, paint_organs, with_organs

PANCREAS_ONLY = {0: "background", 1: "pancreas"}
WITH_ORGANS = {int(k): v for k, v in with_organs({"0": "background", "1": "pancreas"}).items()}


def test_organs_are_painted_where_the_label_is_background_and_the_pancreas_keeps_its_voxels() -> None:
    tissue = np.full((4, 4, 2), Tissue.VISCERAL_FAT, np.uint8)
    tissue[0] = Tissue.LIVER
    tissue[1] = Tissue.PORTAL_VEIN
    tissue[2, :2] = Tissue.GAS
    label = np.zeros(tissue.shape, np.uint8)
    label[1, 0] = 1  # a vessel voxel inside the pancreas annotation stays pancreas
    out = paint_organs(label, tissue, first_value=2)
    value = {name: 2 + i for i, name in enumerate(ORGAN_TISSUES)}
    assert (out[0] == value["liver"]).all()
    assert (out[1, 0] == 1).all() and (out[1, 1:] == value["vessels"]).all()
    assert (out[2, :2] == value["gut"]).all() and (out[2, 2:] == 0).all() and (out[3] == 0).all()
    assert (label[0] == 0).all()  # the input label is not changed in place


def test_organs_follow_the_lesion_class_when_there_is_one() -> None:
    names = with_organs({"0": "background", "1": "pancreas", "2": "lesion"})
    assert names["2"] == "lesion" and names["3"] == "liver" and len(names) == 3 + len(ORGAN_TISSUES)
    tissue = np.full((2, 2, 2), Tissue.SPLEEN, np.uint8)
    out = paint_organs(np.zeros((2, 2, 2), np.uint8), tissue, first_value=3)  # a case without a lesion
    assert (out == 3 + list(ORGAN_TISSUES).index("spleen")).all()


def test_a_label_and_tissue_map_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        paint_organs(np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 3), np.uint8), first_value=2)


def test_the_organ_set_has_the_same_images_and_pancreas_and_lists_its_classes(tmp_path: Path) -> None:
    plain = write_dataset(tmp_path / "plain", num_cases=1, seed=4, workers=1).parent
    organs = write_dataset(tmp_path / "organs", num_cases=1, seed=4, workers=1, organs=True).parent
    assert json.loads((organs / "dataset.json").read_text())["labels"] == {str(k): v for k, v in WITH_ORGANS.items()}
    case = "synth_000.nii.gz"
    for folder in ("imagesTr", "tissuesTr"):
        a, b = (np.asarray(nib.load(root / folder / case).dataobj) for root in (plain, organs))
        assert np.array_equal(a, b)
    pancreas = np.asarray(nib.load(plain / "labelsTr" / case).dataobj)
    labelled = np.asarray(nib.load(organs / "labelsTr" / case).dataobj)
    assert np.array_equal(labelled == 1, pancreas == 1)
    present = set(np.unique(labelled).tolist())
    assert {WITH_ORGANS[v] for v in present} >= {"background", "pancreas", "liver", "kidney", "gut", "vessels"}


def test_organs_need_a_layout_with_a_label_list(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="organs needs a layout"):
        write_dataset(tmp_path / "nih", num_cases=1, layout="nih", organs=True)


def test_positive_patches_centre_only_on_the_named_labels() -> None:
    label = torch.zeros(1, 3, 3, 3, dtype=torch.uint8)
    label[0, 0, 0, 0] = 1  # pancreas
    label[0, 2] = 5  # an organ: context, not a positive centre
    out = PositiveIndicesd(LABEL, [1])({LABEL: label})
    assert out[f"{LABEL}_fg_indices"].tolist() == [0]
    assert len(out[f"{LABEL}_bg_indices"]) == 26  # the organ voxels are negatives


def test_a_model_with_more_classes_is_scored_on_the_datasets_classes_by_name() -> None:
    lookup = lookup_by_name(WITH_ORGANS, PANCREAS_ONLY)
    assert lookup[1] == 1 and all(lookup[v] == 0 for v in WITH_ORGANS if v != 1)
    pred = np.array([0, 1, 2, 7], np.uint8)
    assert apply_lookup(pred, lookup).tolist() == [0, 1, 0, 0]
    # classes matched by name, not by value
    swapped = lookup_by_name(
        {0: "background", 1: "lesion", 2: "pancreas"}, {0: "background", 1: "pancreas", 2: "lesion"}
    )
    assert swapped == {0: 0, 1: 2, 2: 1}


def test_a_dataset_class_the_model_lacks_is_refused_by_name() -> None:
    with pytest.raises(AttnUNetError, match=r"the model has no class \['lesion'\]"):
        lookup_by_name(PANCREAS_ONLY, {0: "background", 1: "pancreas", 2: "lesion"}, "best.ckpt")
    with pytest.raises(AttnUNetError, match="background is not label 0 in both"):
        lookup_by_name({0: "pancreas", 1: "background"}, {0: "background", 1: "pancreas"})


@pytest.mark.slow
def test_a_multi_organ_model_trains_and_is_scored_on_pancreas_only_phantoms(tmp_path: Path) -> None:
    """attnunet-train data.organs=true, then attnunet-evaluate on a pancreas-only set: the
    pancreas is scored, the organs count as background, and a set with a lesion class is refused."""
    env = {**os.environ, "ATTNUNET_CACHE": str(tmp_path / "cache")}

    def attnunet(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "attnunet", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    run = tmp_path / "run"
    trained = attnunet(
        "train",
        "experiment=smoke",
        "data.organs=true",
        "callbacks.model_checkpoint.monitor=val/dice_pancreas",
        f"run_dir={run}",
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    ckpt = run / "checkpoints" / "best.ckpt"
    assert trained.stdout.strip().splitlines()[-1].startswith(f"best checkpoint: {ckpt}  val/dice_pancreas: ")
    assert load_checkpoint(ckpt).labels == WITH_ORGANS
    plain = write_dataset(tmp_path / "plain", num_cases=2, seed=9, workers=1).parent
    scored = attnunet(
        "evaluate", f"ckpt_path={ckpt}", f"data.root={plain}", "split=all", f"hydra.run.dir={tmp_path / 'ev'}"
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert list(summary["per_label"]) == ["pancreas"]
    lesions = write_dataset(tmp_path / "lesions", num_cases=2, seed=9, workers=1, lesions=True).parent
    refused = attnunet(
        "evaluate", f"ckpt_path={ckpt}", f"data.root={lesions}", "split=all", f"hydra.run.dir={tmp_path / 'ev2'}"
    )
    assert refused.returncode != 0
    assert "the model has no class ['lesion']" in refused.stderr
