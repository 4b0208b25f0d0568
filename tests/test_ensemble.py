"""Fold ensembles and predictive uncertainty: infer and evaluate with several checkpoints."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from omegaconf import OmegaConf

from attnunet.data.datamodule import SegmentationDataModule
from attnunet.errors import AttnUNetError
from attnunet.evaluation.on_split import evaluate_on_split
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.configured import load_models, model_sources, predictor_from_config
from attnunet.inference.ensemble import EnsemblePredictor, mean_uncertainty, predictive_entropy
from attnunet.inference.predictor import Predictor, PredictorSettings
from attnunet.inference.runner import predict_cases
from tests.helpers import assert_same_prediction, make_checkpoint, run_cli, stored_as

LABELS = {0: "background", 1: "pancreas"}


def predictor_cfg(**sources: object) -> OmegaConf:
    keys = {"ckpt_path": None, "ckpt_dir": None, "model_file": None, **sources}
    return OmegaConf.create(
        {
            **keys,
            "device": "cpu",
            "precision": "fp32",
            "overlap": None,
            "sw_batch_size": None,
            "tta": False,
            "largest_component": False,
            "performance": {"channels_last": "auto", "compile": False},
        }
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two k-fold-sweep-like runs with different weights (make_checkpoint seeds its net; a copy
    with perturbed weights stands for the second fold)."""
    import torch

    root = tmp_path_factory.mktemp("sweep")
    (root / "0" / "checkpoints").mkdir(parents=True)
    first = make_checkpoint(root / "0" / "checkpoints" / "best.ckpt", LABELS, spacing=(6.0, 6.0, 6.0))
    second = root / "1" / "checkpoints" / "best.ckpt"
    second.parent.mkdir(parents=True)
    ckpt = torch.load(first, weights_only=True)
    torch.manual_seed(1)
    state = ckpt["state_dict"]
    ckpt["state_dict"] = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(ckpt, second)
    return [first, second]


def test_ensemble_of_one_checkpoint_twice_equals_the_single_model(checkpoints: list[Path], cropped_ct: Path) -> None:
    settings = PredictorSettings(device="cpu", precision="fp32")
    single = Predictor(load_checkpoint(checkpoints[0]), settings)(cropped_ct)
    twice = EnsemblePredictor([load_checkpoint(checkpoints[0])] * 2, settings)(cropped_ct)
    np.testing.assert_array_equal(twice.labels, single.labels)
    np.testing.assert_allclose(twice.probabilities, single.probabilities, atol=1e-6)


def test_ensemble_averages_the_members_softmax(checkpoints: list[Path], cropped_ct: Path) -> None:
    settings = PredictorSettings(device="cpu", precision="fp32")
    members = [Predictor(load_checkpoint(c), settings)(cropped_ct).probabilities for c in checkpoints]
    both = EnsemblePredictor([load_checkpoint(c) for c in checkpoints], settings)(cropped_ct)
    assert not np.allclose(members[0], members[1], atol=1e-3)  # the members do differ
    np.testing.assert_allclose(both.probabilities, (members[0] + members[1]) / 2, atol=1e-5)
    np.testing.assert_array_equal(both.labels, both.probabilities.argmax(0))


def test_ckpt_dir_and_list_select_the_same_members(checkpoints: list[Path]) -> None:
    folder = checkpoints[0].parents[2]
    assert model_sources(predictor_cfg(ckpt_dir=str(folder))) == checkpoints
    assert model_sources(predictor_cfg(ckpt_path=[str(c) for c in checkpoints])) == checkpoints
    assert isinstance(predictor_from_config(predictor_cfg(ckpt_dir=str(folder))), EnsemblePredictor)
    with pytest.raises(AttnUNetError, match="no checkpoints/best.ckpt below"):
        model_sources(predictor_cfg(ckpt_dir=str(folder / "0" / "checkpoints")))


def test_members_with_another_label_map_are_refused(checkpoints: list[Path], tmp_path: Path) -> None:
    other = make_checkpoint(tmp_path / "other.ckpt", {0: "background", 1: "pancreas", 2: "lesion"})
    with pytest.raises(AttnUNetError, match="label map differs") as info:
        load_models(predictor_cfg(ckpt_path=[str(checkpoints[0]), str(other)]))
    assert str(other) in str(info.value)
    respaced = make_checkpoint(tmp_path / "respaced.ckpt", LABELS, spacing=(4.0, 4.0, 4.0))
    with pytest.raises(AttnUNetError, match="preprocessing differs"):
        load_models(predictor_cfg(ckpt_path=[str(checkpoints[0]), str(respaced)]))


def test_uncertainty_is_the_entropy_of_the_averaged_softmax_on_the_input_grid(
    checkpoints: list[Path], cropped_ct: Path, tmp_path: Path
) -> None:
    predictor = EnsemblePredictor([load_checkpoint(c) for c in checkpoints], PredictorSettings(precision="fp32"))
    predict_cases(predictor, [("ct", cropped_ct)], tmp_path, save_uncertainty=True, save_probabilities=True)
    unc = nib.load(tmp_path / "ct_uncertainty.nii.gz")
    probs = np.moveaxis(np.asanyarray(nib.load(tmp_path / "ct_probabilities.nii.gz").dataobj), -1, 0)
    assert unc.shape == nib.load(cropped_ct).shape and np.allclose(unc.affine, nib.load(cropped_ct).affine)
    data = np.asanyarray(unc.dataobj)
    assert data.dtype == np.float32 and data.min() >= 0 and data.max() <= math.log(2) + 1e-5
    np.testing.assert_allclose(data, predictive_entropy(probs), atol=1e-5)


def test_mean_uncertainty_counts_the_foreground_region_only() -> None:
    sure = np.zeros((2, 4, 4, 4), np.float32)
    sure[0] = 1.0
    assert mean_uncertainty(sure) == 0.0
    torn = sure.copy()
    torn[:, :2] = 0.5  # half the volume undecided
    assert mean_uncertainty(torn) == pytest.approx(math.log(2), rel=1e-5)


def test_checkpoints_copied_keep_working(checkpoints: list[Path], tmp_path: Path) -> None:
    """A sweep folder moved elsewhere is still found (paths are not stored)."""
    moved = tmp_path / "moved"
    shutil.copytree(checkpoints[0].parents[2], moved)
    assert len(load_models(predictor_cfg(ckpt_dir=str(moved)))) == 2


def test_fold_ensemble_refuses_to_score_a_split_its_members_do_not_share(
    checkpoints: list[Path], tiny_dataset: Path
) -> None:
    """Fold i's validation cases are training cases of the other folds: no honest ``val`` score."""
    datamodule = SegmentationDataModule(root=str(tiny_dataset), cache="none", num_workers=0, merge_labels={2: 1})
    first, second = (c["case_id"] for c in datamodule.case_list.cases[:2])
    folds = [{"train": [first], "val": [second]}, {"train": [second], "val": [first]}]
    members = [load_checkpoint(p) for p in checkpoints]
    for member, fold in zip(members, folds):
        member.meta["split"] = fold
    predictor = EnsemblePredictor(members, PredictorSettings(device="cpu", precision="fp32"))
    with pytest.raises(AttnUNetError, match="trained on different cases") as info:
        evaluate_on_split(predictor, datamodule, "val", 2.0, checkpoints[0])
    assert str(checkpoints[0]) in str(info.value)
    members[1].meta["split"] = folds[0]  # same cases (e.g. seeds of one split): scored as usual
    rows = evaluate_on_split(predictor, datamodule, "val", 2.0, checkpoints[0])
    assert {r["case"] for r in rows} == {second}


def test_ensemble_tta_flips_only_along_the_axes_every_member_was_trained_mirrored(tmp_path: Path) -> None:
    tta = PredictorSettings(precision="fp32", tta=True)
    wide = load_checkpoint(make_checkpoint(tmp_path / "xyz.ckpt", LABELS, flip_axes=(0, 1, 2)))
    x_only = load_checkpoint(make_checkpoint(tmp_path / "x.ckpt", LABELS, flip_axes=(0,)))
    y_only = load_checkpoint(make_checkpoint(tmp_path / "y.ckpt", LABELS, flip_axes=(1,)))
    assert EnsemblePredictor([wide, x_only], tta).flip_axes == [0]
    with pytest.raises(AttnUNetError, match="mirrored along no common axis"):
        EnsemblePredictor([x_only, y_only], tta)
    unflipped = load_checkpoint(make_checkpoint(tmp_path / "none.ckpt", LABELS, flip_axes=()))
    with pytest.raises(AttnUNetError, match="needs a model trained with flip augmentation") as e:
        EnsemblePredictor([wide, unflipped], tta)
    assert "none.ckpt" in str(e.value)


@pytest.mark.slow
def test_ensemble_sharded_over_two_processes_at_the_command_line(
    checkpoints: list[Path], cropped_ct: Path, tmp_path: Path
) -> None:
    """``ckpt_path=[a,b]`` runs the ensemble; ``shard=i/2`` gives each process every second case; together
    they write what the ensemble predicts for each case."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for code in ("RAS", "LPS", "SRA"):
        stored_as(cropped_ct, code, inputs / f"ct_{code}.nii.gz")
    members = f"ckpt_path=[{checkpoints[0]},{checkpoints[1]}]"
    for shard, count in (("0/2", 2), ("1/2", 1)):
        args = [members, f"input={inputs}", f"output_dir={tmp_path / 'out'}", "precision=fp32", f"shard={shard}"]
        result = run_cli("infer", [*args, "save_probabilities=true"], tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"{count} done, 0 already finished, 0 failed" in result.stdout
    ensemble = EnsemblePredictor([load_checkpoint(c) for c in checkpoints], PredictorSettings(precision="fp32"))
    for code in ("RAS", "LPS", "SRA"):
        expected = ensemble(inputs / f"ct_{code}.nii.gz")
        labels = np.asanyarray(nib.load(tmp_path / "out" / f"ct_{code}_seg.nii.gz").dataobj)
        probabilities = nib.load(tmp_path / "out" / f"ct_{code}_probabilities.nii.gz").get_fdata(dtype=np.float32)
        probabilities = np.moveaxis(probabilities, -1, 0)
        assert_same_prediction(probabilities, labels, expected.probabilities, expected.labels, atol=1e-5)
