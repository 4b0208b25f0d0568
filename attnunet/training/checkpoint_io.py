"""Checkpoint writes that a kill at any moment cannot corrupt.

Lightning's ``TorchCheckpointIO`` writes local files through an fsspec transaction whose temporary
file lives in the system temp folder; when that is another filesystem than the run folder (common
on clusters) the final ``shutil.move`` is a copy, and a kill during it leaves a truncated
``last.ckpt``. Here the temporary file sits next to the target, is flushed to disk, and replaces it
with one atomic ``os.replace``: the previous checkpoint stays loadable until the new one is whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from attnunet.checkpoint_format import read_checkpoint_file
from attnunet.utils.atomic import atomic_target, remove_leftovers


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with same-folder temporary file + fsync + ``os.replace`` for local paths,
    and resumed runs read through the product's safe loader (one-line error, never a traceback)."""

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        if "://" in str(path):  # remote storage: Lightning's fsspec path, always weights-only
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return read_checkpoint_file(path, map_location=map_location)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if "://" in str(path):  # remote storage: keep Lightning's fsspec path
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        remove_leftovers(path)  # of a save killed mid-write; only rank 0 writes a checkpoint
        with atomic_target(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
