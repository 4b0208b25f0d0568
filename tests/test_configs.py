"""Every config group composes from the real tree and instantiates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytorch_lightning.strategies import DDPStrategy

from attnunet.cli.common import config_dir
from attnunet.data.datamodule import SegmentationDataModule, SyntheticDataModule
from attnunet.data.layouts import discover
from attnunet.models.factory import build_model
from attnunet.training.callbacks import AttentionMapLogger
from tests.helpers import compose_train

CONFIGS = Path(config_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml") if not p.stem.startswith("_"))


def test_config_tree_is_found() -> None:
    assert (CONFIGS / "train.yaml").is_file() and (CONFIGS / "synth.yaml").is_file()


@pytest.mark.parametrize("name", options("model"))
def test_model_configs_build(name: str) -> None:
    cfg = compose_train([f"model={name}"])
    net = build_model({**OmegaConf.to_container(cfg.model), "num_classes": 2})
    assert (len(net.gates) > 0) == cfg.model.attention


@pytest.mark.parametrize("name", [n for n in options("data") if n != "nih_pancreas"])
def test_data_configs_instantiate(name: str, tiny_dataset: Path) -> None:
    cfg = compose_train([f"data={name}", f"data.root={tiny_dataset}"])
    dm = instantiate(cfg.data)
    assert isinstance(dm, SegmentationDataModule)
    assert dm.labels == {0: "background", 1: "pancreas", 2: "lesion"}
    assert len(dm.case_list.cases) == 4
    assert isinstance(dm, SyntheticDataModule) == (name == "synthetic")


def test_nih_config_reads_the_tcia_layout(nih_dataset: Path) -> None:
    dm = instantiate(compose_train(["data=nih_pancreas", f"data.root={nih_dataset}"]).data)
    assert dm.labels == {0: "background", 1: "pancreas"}
    assert [c["case_id"] for c in dm.case_list.cases] == ["PANCREAS_0001", "PANCREAS_0002", "PANCREAS_0003"]


@pytest.mark.parametrize("name", options("trainer"))
def test_trainer_configs_build(name: str, tmp_path: Path) -> None:
    """Every trainer config builds a Trainer with its own settings; the GPU ones on the CPU here
    (accelerator swapped, everything else as configured, DDP strategy included)."""
    cfg = compose_train([f"trainer={name}", f"run_dir={tmp_path}", "trainer.precision=32-true"])
    on_gpu = cfg.trainer.accelerator == "gpu"
    if on_gpu and not torch.cuda.is_available():
        cfg.trainer.accelerator = "cpu"
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert isinstance(trainer, pl.Trainer)
    assert trainer.num_devices == cfg.trainer.devices and trainer.num_nodes == cfg.trainer.get("num_nodes", 1)
    assert isinstance(trainer.strategy, DDPStrategy) == (cfg.trainer.get("strategy") == "ddp")
    assert trainer.max_epochs == cfg.trainer.max_epochs


def test_callbacks_and_logger_instantiate(tmp_path: Path) -> None:
    cfg = compose_train([f"run_dir={tmp_path}"])
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    assert any(isinstance(c, AttentionMapLogger) for c in callbacks)
    ckpt = next(c for c in callbacks if isinstance(c, pl.callbacks.ModelCheckpoint))
    assert ckpt.monitor == "val/dice" and ckpt.dirpath == str(tmp_path / "checkpoints")
    loggers = [instantiate(c) for c in cfg.logger.values()]
    assert Path(loggers[0].log_dir) == tmp_path / "tensorboard"


@pytest.mark.parametrize("data", options("data"))
@pytest.mark.parametrize("name", options("experiment"))
def test_experiments_compose_with_every_data_config(
    name: str, data: str, tiny_dataset: Path, nih_dataset: Path, tmp_path: Path
) -> None:
    """Experiments override only what they are about: each one builds a datamodule and a model from
    every data config (the TypeError of a synthetic-only key set by an experiment shows here)."""
    root = nih_dataset if data == "nih_pancreas" else tiny_dataset
    cfg = compose_train([f"experiment={name}", f"data={data}", f"data.root={root}", f"run_dir={tmp_path}"])
    assert cfg.trainer.max_epochs >= 1
    dm = instantiate(cfg.data)
    assert isinstance(dm, SegmentationDataModule)
    assert len(dm.case_list.cases) >= 2
    build_model({**OmegaConf.to_container(cfg.model), "num_classes": len(dm.labels)})


def test_smoke_on_own_data_uses_max_cases(tiny_dataset: Path) -> None:
    cfg = compose_train(["experiment=smoke", "data=nifti_folder", f"data.root={tiny_dataset}", "data.max_cases=2"])
    dm = instantiate(cfg.data)
    every = [c["case_id"] for c in discover("auto", tiny_dataset).cases]
    assert len(every) > 2
    assert [c["case_id"] for c in dm.case_list.cases] == every[:2]
    assert compose_train(["experiment=smoke"]).data.num_cases == 4  # the synthetic set it generates shrinks too


def test_help_works_from_any_directory(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "attnunet", "train", "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "attention_unet" in out.stdout and "patch_size" in out.stdout
