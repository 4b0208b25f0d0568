"""Saving ``last.ckpt`` when the job is told to stop (pre-emption, SLURM's warning signal)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class PreemptionCheckpoint(pl.Callback):
    """On SIGTERM or SIGUSR1 (pre-emption, SLURM's warning signal) save ``last.ckpt`` and exit.

    The signal only sets a flag; the checkpoint is written at the next training-batch boundary, where
    the model, optimiser, scheduler, loop counters and RNG are consistent, so
    ``ckpt_path=last`` resumes exactly there. Exit status is ``128 + signal``. Lightning alone stops
    on SIGTERM without saving, and handles SIGUSR1 only under SLURM auto-requeue.
    """

    def __init__(self, dirpath: str, filename: str = "last.ckpt", signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")):
        self.path = Path(dirpath) / filename
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._flag)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _flag(self, signum: int, frame: Any) -> None:
        self.received = signum

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.received is None:
            return
        trainer.save_checkpoint(self.path)
        log.warning("received signal %d: saved %s, exiting", self.received, self.path)
        raise SystemExit(128 + self.received)
