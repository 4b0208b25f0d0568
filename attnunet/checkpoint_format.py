"""The checkpoint format: what an attnunet checkpoint stores besides Lightning's own fields.

A checkpoint is a dictionary of tensors and plain data (loadable with ``weights_only=True``):
``state_dict`` holds the network's weights under :data:`NET_PREFIX`, and ``checkpoint[KEY]`` a
:class:`CheckpointDescription`, everything inference needs besides the weights. Training writes it
(:meth:`~attnunet.training.module.SegmentationModule.on_save_checkpoint`), inference, evaluation,
``init_weights=`` and resumed training read it here. Kept free of Lightning and MONAI so that
inference does not import them for it.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import attnunet
from attnunet.errors import AttnUNetError, as_user_error
from attnunet.utils.atomic import atomic_target

KEY = "attnunet"  # checkpoint[KEY]: the description
FORMAT = 1  # raised when the description changes incompatibly; a reader refuses a newer one
NET_PREFIX = "net."  # state_dict keys of the network's tensors (the LightningModule's ``net``)


@dataclass
class CheckpointDescription:
    """What inference needs besides the weights, as plain data.

    Fields not written by older checkpoints of the same format (``split``, ``postprocessing``,
    ``flip_axes``) read as their defaults, which mean "not recorded".
    """

    model: dict[str, Any]  # model config for :func:`~attnunet.models.factory.build_model`, with num_classes
    labels: dict[int, str]  # label value -> name, background first
    preprocessing: dict[str, Any]  # :class:`~attnunet.data.transforms.PreprocessingSpec` as a dict
    sliding_window: dict[str, Any]  # :class:`~attnunet.inference.sliding_window.SlidingWindowSpec` as a dict
    split: dict[str, list[str]] | None = None  # case ids per split ("train", "val") the run used
    postprocessing: dict[str, Any] = field(default_factory=dict)  # chosen at the latest validation
    flip_axes: list[int] = field(default_factory=list)  # spatial axes the training data were mirrored along
    version: str | None = attnunet.__version__  # attnunet version that wrote it (None: not recorded)
    format: int | None = FORMAT  # None: not recorded (an exported model's sidecar without it)

    def to_dict(self) -> dict[str, Any]:
        """The stored form: plain data only, label values as strings (``torch.save`` keys)."""
        stored = asdict(self)
        stored["labels"] = {str(k): str(v) for k, v in self.labels.items()}
        order = ("format", "version", "model", "labels", "preprocessing", "sliding_window", "split")
        return {k: stored[k] for k in (*order, "postprocessing", "flip_axes")}

    @classmethod
    def from_dict(cls, stored: Any, source: str | Path | None = None) -> CheckpointDescription:
        """Validate a stored description (from ``source``, named in errors) and read it.

        Raises:
            AttnUNetError: not a dictionary, a newer format, a required entry missing or malformed.
        """
        if not isinstance(stored, Mapping):
            raise AttnUNetError("not an attnunet checkpoint (its model description is not a dictionary)", source)
        try:
            fmt = int(stored.get("format", 0))
        except (TypeError, ValueError):
            raise AttnUNetError(f"malformed checkpoint format {stored.get('format')!r}", source) from None
        if fmt > FORMAT:
            raise AttnUNetError(f"checkpoint format {fmt} is newer than this attnunet understands", source)
        for key in ("model", "labels", "preprocessing", "sliding_window"):
            if not isinstance(stored.get(key), Mapping):
                raise AttnUNetError(f"checkpoint description has no {key!r} dictionary", source)
        try:
            labels = {int(k): str(v) for k, v in stored["labels"].items()}
            flip_axes = [int(a) for a in stored.get("flip_axes") or []]
        except (TypeError, ValueError) as e:
            raise AttnUNetError(f"malformed checkpoint description ({e})", source) from None
        return cls(
            model=dict(stored["model"]),
            labels=labels,
            preprocessing=dict(stored["preprocessing"]),
            sliding_window=dict(stored["sliding_window"]),
            split=stored.get("split"),
            postprocessing=dict(stored.get("postprocessing") or {}),
            flip_axes=flip_axes,
            version=stored.get("version"),
            format=fmt,
        )


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
        raise as_user_error(e, path, "unreadable checkpoint") from None
    if not isinstance(ckpt, dict):
        raise AttnUNetError("not a checkpoint (expected a dictionary)", path)
    return ckpt


def read_checkpoint(
    path: str | Path, map_location: Any = "cpu"
) -> tuple[CheckpointDescription, dict[str, torch.Tensor]]:
    """The validated description and the network's weights (``state_dict`` without :data:`NET_PREFIX`)
    of the attnunet checkpoint at ``path``; anything else is refused with an :class:`AttnUNetError`."""
    ckpt = read_checkpoint_file(path, map_location)
    if KEY not in ckpt or not isinstance(ckpt.get("state_dict"), Mapping):
        raise AttnUNetError("not an attnunet checkpoint (no model description inside)", Path(path).expanduser())
    description = CheckpointDescription.from_dict(ckpt[KEY], Path(path).expanduser())
    weights = {k[len(NET_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(NET_PREFIX)}
    return description, weights


def write_checkpoint(path: str | Path, description: CheckpointDescription, net_state: Mapping[str, Any]) -> Path:
    """Write a checkpoint holding only the network's weights and its description (what inference
    reads; training's own checkpoints also carry Lightning's fields). Written atomically."""
    path = Path(path).expanduser()
    state = {f"{NET_PREFIX}{k}": v for k, v in net_state.items()}
    with atomic_target(path) as tmp:
        torch.save({"state_dict": state, KEY: description.to_dict()}, tmp)
    return path
