"""A self-describing attnunet checkpoint as a ready-to-run network (read by :mod:`attnunet.checkpoint_format`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnunet.checkpoint_format import read_checkpoint
from attnunet.data.transforms import PreprocessingSpec
from attnunet.errors import AttnUNetError
from attnunet.inference.sliding_window import SlidingWindowSpec
from attnunet.models.attention_unet import AttentionUNet
from attnunet.models.factory import build_model


@dataclass
class LoadedModel:
    """A network in eval mode and everything needed to run it like in training."""

    net: AttentionUNet
    labels: dict[int, str]
    preprocessing: PreprocessingSpec
    sliding_window: SlidingWindowSpec
    meta: dict[str, Any]  # the checkpoint's description as stored (CheckpointDescription.to_dict())
    source: Path | None = None  # the checkpoint or exported file (named in errors)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Read ``path`` without unpickling code; refuse anything that is not an attnunet checkpoint."""
    source = Path(path).expanduser()
    description, weights = read_checkpoint(source, map_location)
    net = build_model(description.model)
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        raise AttnUNetError(f"weights do not match the described model ({str(e).splitlines()[0]})", source) from None
    return LoadedModel(
        net=net.eval(),
        labels=description.labels,
        preprocessing=PreprocessingSpec.from_dict(description.preprocessing),
        sliding_window=SlidingWindowSpec.from_dict(description.sliding_window),
        meta=description.to_dict(),
        source=source,
    )
