"""Shared fixtures: a tiny synthetic dataset and the real config tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from attnunet.cli.common import config_dir
from attnunet.phantom import write_dataset

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic cases (with lesions) in the MSD layout; returns the dataset folder."""
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    write_dataset(root, num_cases=4, seed=3, lesions=True)
    return root


@pytest.fixture(scope="session")
def nih_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic cases laid out as TCIA ships NIH Pancreas-CT (DICOM series + NIfTI labels)."""
    root = tmp_path_factory.mktemp("synthetic") / "nih"
    write_dataset(root, num_cases=3, seed=5, layout="nih")
    return root


def compose_train(overrides: list[str]) -> DictConfig:
    """Compose ``train.yaml`` exactly as ``attnunet-train`` would, with ``run_dir`` filled in."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def attnunet(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("attnunet-train")
    cmd = [exe] if args[0] == "train" and exe else [sys.executable, "-m", "attnunet", args[0]]
    env = {**os.environ, "ATTNUNET_CACHE": str(cache)}
    return subprocess.run(cmd + args[1:], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess, Path]:
    cwd = tmp_path_factory.mktemp("work")
    cache = tmp_path_factory.mktemp("cache")
    result = attnunet(["train", "experiment=smoke"], cwd, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((cwd / "outputs" / "train").iterdir())
    assert len(runs) == 1
    return runs[0], result, cache
