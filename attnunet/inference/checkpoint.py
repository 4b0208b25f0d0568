"""Load a self-describing attnunet checkpoint safely (``weights_only=True``, plain data only)."""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnunet.checkpoint_format import CHECKPOINT_FORMAT, CHECKPOINT_KEY
from attnunet.data.transforms import PreprocessingSpec
from attnunet.errors import AttnUNetError
from attnunet.inference.sliding_window import SlidingWindowSpec
from attnunet.models.attention_unet import AttentionUNet
from attnunet.models.factory import build_model

NET_PREFIX = "net."


@dataclass
class LoadedModel:
    """A network in eval mode and everything needed to run it like in training."""

    net: AttentionUNet
    labels: dict[int, str]
    preprocessing: PreprocessingSpec
    sliding_window: SlidingWindowSpec
    meta: dict[str, Any]
    source: Path | None = None  # the checkpoint or exported file (named in errors)


def read_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, nothing in the file runs.

    The one safe reader for inference, evaluation and resumed training; a file that would need to
    unpickle objects, or cannot be read, is an :class:`AttnUNetError` naming it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise AttnUNetError("checkpoint not found", path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is a paragraph; the object it refused is named after "GLOBAL".
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = found.group(1) if found else type(e).__name__
        raise AttnUNetError(f"refused: not a plain-data checkpoint (would need to unpickle {what})", path) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise AttnUNetError(
            f"unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:160]})", path
        ) from None
    if not isinstance(ckpt, dict):
        raise AttnUNetError("not a checkpoint (expected a dictionary)", path)
    return ckpt


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Read ``path`` without unpickling code; refuse anything that is not an attnunet checkpoint."""
    ckpt = read_checkpoint_file(path, map_location)
    if CHECKPOINT_KEY not in ckpt or "state_dict" not in ckpt:
        raise AttnUNetError("not an attnunet checkpoint (no model description inside)", path)
    meta = ckpt[CHECKPOINT_KEY]
    if int(meta.get("format", 0)) > CHECKPOINT_FORMAT:
        raise AttnUNetError(f"checkpoint format {meta.get('format')} is newer than this attnunet understands", path)
    labels = {int(k): str(v) for k, v in meta["labels"].items()}
    net = build_model(meta["model"])
    state = {k[len(NET_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(NET_PREFIX)}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise AttnUNetError(f"weights do not match the described model ({str(e).splitlines()[0]})", path) from None
    return LoadedModel(
        net=net.eval(),
        labels=labels,
        preprocessing=PreprocessingSpec.from_dict(meta["preprocessing"]),
        sliding_window=SlidingWindowSpec.from_dict(meta["sliding_window"]),
        meta=meta,
        source=Path(path).expanduser(),
    )
