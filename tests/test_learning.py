"""Training learns: on one small case, tens of optimiser steps of the real training loop bring the
loss down and the validation Dice of that case up to a high bar."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from attnunet.training.module import SegmentationModule
from tests.helpers import BINARY, SMALL_NET

STEPS = 40
SHAPE = (32, 32, 32)


def one_case(seed: int = 0) -> dict[str, torch.Tensor]:
    """A windowed CT-like patch ``(1, 32, 32, 32)`` in [0, 1]: an ellipsoidal organ (0.7) in textured
    soft tissue (0.45), both noisy (sd 0.06), and its label ``(1, 32, 32, 32)``."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")).astype(np.float32)
    centre, radii = np.array([15.0, 17.0, 14.0]), np.array([9.0, 6.0, 7.0])
    organ = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
    image = np.where(organ, 0.7, 0.45) + rng.normal(0, 0.06, SHAPE)
    return {
        "image": torch.from_numpy(np.clip(image, 0, 1).astype(np.float32))[None],
        "label": torch.from_numpy(organ.astype(np.float32))[None],
    }


class LossHistory(pl.Callback):
    """The training loss of every step, as the module returned it."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def test_a_few_dozen_steps_on_one_case_learn_it() -> None:
    pl.seed_everything(0)
    case = one_case()
    module = SegmentationModule(
        model=SMALL_NET,
        labels=BINARY,
        preprocessing={"spacing": [4.0, 4.0, 4.0], "intensity_window": [-175, 250]},
        sliding_window={"roi_size": list(SHAPE), "overlap": 0.25, "sw_batch_size": 1},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-2},
    )
    history = LossHistory()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[history],
    )
    trainer.fit(module, train_dataloaders=DataLoader([case] * STEPS, batch_size=1))
    assert len(history.losses) == STEPS
    first, last = np.mean(history.losses[:5]), np.mean(history.losses[-5:])
    assert last < 0.5 * first, (first, last)
    # The module's own validation: sliding window over the case, argmax, Dice of the pancreas label.
    (scores,) = trainer.validate(module, dataloaders=DataLoader([case], batch_size=1), verbose=False)
    assert scores["val/dice_pancreas"] > 0.9, scores
