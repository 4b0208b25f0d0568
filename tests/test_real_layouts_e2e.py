"""``attnunet-train`` from each real-data config on data laid out as users have it (synthetic scans)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from tests.helpers import run_attnunet

pytestmark = pytest.mark.slow

# The smoke experiment's settings, for any data config (experiment=smoke also sizes the synthetic set).
TINY = [
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.check_val_every_n_epoch=1",
    "data.preprocessing.spacing=[4.0,4.0,4.0]",
    "data.patch_size=[32,32,32]",
    "data.num_workers=0",
    "model.channels=[4,8,16]",
    "sliding_window.sw_batch_size=8",
]


def train(args: list[str], cwd: Path, cache: Path) -> tuple[Path, subprocess.CompletedProcess]:
    result = run_attnunet(["train", *TINY, *args], cwd, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (cwd / "outputs" / "train").iterdir()
    return run, result


def labels_of(run: Path) -> dict[str, str]:
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    return ckpt["attnunet"]["labels"]


def test_msd_config_trains_the_binary_task_and_evaluates_with_merged_labels(tiny_dataset: Path, tmp_path: Path) -> None:
    data = ["data=msd_pancreas", f"data.root={tiny_dataset}", "data.merge_labels={2:1}"]
    run, _ = train(data, tmp_path, tmp_path / "cache")
    assert labels_of(run) == {"0": "background", "1": "pancreas"}  # the dataset's lesion label merged
    result = run_attnunet(
        ["evaluate", *data, *TINY[3:5], f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"run_dir={tmp_path / 'ev'}"],
        tmp_path,
        tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (tmp_path / "ev" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[1] == "pancreas"


def test_nnunet_raw_folder_trains_through_nifti_folder(tmp_path: Path) -> None:
    root = tmp_path / "nnUNet_raw" / "Dataset007_Pancreas"
    made = run_attnunet(["synth", f"output_dir={root}", "num_cases=3", "layout=nnunet"], tmp_path, tmp_path / "cache")
    assert made.returncode == 0, made.stderr[-3000:]
    run, result = train(["data=nifti_folder", f"data.root={root}"], tmp_path, tmp_path / "cache")
    assert labels_of(run) == {"0": "background", "1": "pancreas"}
    log = result.stdout + result.stderr
    assert "Dataset layout of" in log and ": nnunet" in log


def test_nih_dicom_layout_trains_with_a_persistent_cache(nih_dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    data = ["data=nih_pancreas", f"data.root={nih_dataset}", "data.cache=disk"]
    run, _ = train(data, tmp_path, cache)
    assert labels_of(run) == {"0": "background", "1": "pancreas"}
    cached = sorted((cache / "preprocessed").rglob("*.pt"))
    assert len(cached) == 3  # two training + one validation series, preprocessed once


def test_paper_nih_experiment_trains_with_the_papers_settings(nih_dataset: Path, tmp_path: Path) -> None:
    """experiment=paper_nih at toy size: z-score input, batch norm, Adam 1e-4 with step decay, Dice loss."""
    toy = [
        "data.patch_size=[32,32,32]",
        "data.preprocessing.spacing=[4.0,4.0,4.0]",
        "model.channels=[4,8,16]",
        "trainer=cpu",
    ]
    run, _ = train(["experiment=paper_nih", f"data.root={nih_dataset}", *toy], tmp_path, tmp_path / "cache")
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["attnunet"]["preprocessing"]["normalization"] == "zscore"
    assert ckpt["attnunet"]["model"]["norm"] == "batch"
    assert any(k.endswith("running_mean") for k in ckpt["state_dict"])
    hparams = ckpt["hyper_parameters"]
    assert hparams["optimizer"]["_target_"] == "torch.optim.Adam" and hparams["optimizer"]["lr"] == 1e-4
    assert hparams["scheduler"]["_target_"] == "torch.optim.lr_scheduler.StepLR"
    assert hparams["loss"]["lambda_ce"] == 0.0


def test_msd_recipe_trains_anisotropic_with_a_disk_cache(tiny_dataset: Path, tmp_path: Path) -> None:
    toy = [
        "data.patch_size=[32,32,16]",
        "data.preprocessing.spacing=[4.0,4.0,8.0]",
        "data.num_workers=0",
        "model.channels=[4,8,8,8,8]",
        "trainer=cpu",
    ]
    run, _ = train(["experiment=msd_pancreas", f"data.root={tiny_dataset}", *toy], tmp_path, tmp_path / "cache")
    assert labels_of(run) == {"0": "background", "1": "pancreas", "2": "lesion"}
    assert len(list((tmp_path / "cache" / "preprocessed").rglob("*.pt"))) == 4
