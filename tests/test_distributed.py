"""Two-process DDP on CPU: one run dir, one set of checkpoints, the same Dice as one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnunet.training.module import SegmentationModule
from attnunet.utils.hardware import resolve_precision
from tests.helpers import compose_train, run_attnunet

pytestmark = pytest.mark.slow

# Three validation cases over two ranks: an uneven split, where padding must not count a case twice;
# one validation case over two ranks: the second rank has none and must contribute zero counts.
SPLITS = {"three_val_cases": (6, 0.5), "one_val_case": (4, 0.25)}


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_ddp_cpu_run_matches_single_process_dice(split: str, smoke_run, tmp_path: Path) -> None:
    _, _, cache = smoke_run
    num_cases, val_fraction = SPLITS[split]
    data = [f"data.max_cases={num_cases}", f"data.val_fraction={val_fraction}"]
    args = ["experiment=smoke", "trainer=ddp_cpu", "trainer.max_epochs=1", *data]
    result = run_attnunet(["train", *args], tmp_path, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "train").iterdir())
    assert len(runs) == 1  # the worker process wrote into the same run dir
    run = runs[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    ddp_dice = events.Scalars("val/dice")[-1].value

    # Same weights, same validation cases, one process.
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    cfg = compose_train(["experiment=smoke", *data, f"run_dir={tmp_path / 'single'}"])
    cfg.data.root = str(next(p for p in cache.iterdir() if f"-n{num_cases}-" in p.name))
    datamodule = instantiate(cfg.data)
    module = SegmentationModule(**ckpt["hyper_parameters"])
    module.load_state_dict(ckpt["state_dict"])
    precision = resolve_precision("auto", "cpu")  # as the DDP run chose it
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, precision=precision)
    (single,) = trainer.validate(module, datamodule=datamodule)
    assert single["val/dice"] == pytest.approx(ddp_dice, abs=1e-4)
