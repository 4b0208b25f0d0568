"""Shared fixtures: a tiny synthetic dataset and the real config tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from attnunet.cli.common import config_dir
from attnunet.data.synthetic import write_dataset

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic cases (with lesions) in the MSD layout; returns the dataset folder."""
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    write_dataset(root, num_cases=4, seed=3, lesions=True)
    return root


def compose_train(overrides: list[str]) -> DictConfig:
    """Compose ``train.yaml`` exactly as ``attnunet-train`` would, with ``run_dir`` filled in."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)
