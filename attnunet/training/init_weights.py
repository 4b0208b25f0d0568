"""Start training from another run's weights (``init_weights=``), optionally with a frozen encoder.

What nnU-Net users get from pretrained weights: a model trained on the phantoms (or on another
dataset) is fine-tuned on a handful of labelled scans. Tensors are copied where name and shape
match; the output heads of another label map keep their fresh initialisation. A checkpoint of
another architecture (widths, depth, strides, gates, norm) is refused, since copying part of it
would start from a network nothing was ever trained as.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch import nn

from attnunet.checkpoint_format import read_checkpoint
from attnunet.errors import AttnUNetError
from attnunet.models.attention_unet import AttentionUNet

# Model settings that change which layers exist or what their weights mean; the others (num_classes,
# deep_supervision, dropout, activation) leave the shared layers compatible.
ARCHITECTURE_KEYS = (
    "name",
    "spatial_dims",
    "in_channels",
    "channels",
    "strides",
    "attention",
    "attention_levels",
    "norm",
    "bottleneck_attention",
)


def load_initial_weights(net: nn.Module, path: str | Path, model_config: Mapping[str, Any]) -> str:
    """Copy into ``net`` every tensor of the checkpoint at ``path`` that matches by name and shape.

    Args:
        net: the freshly built network of this run.
        model_config: this run's model settings (as stored in checkpoints).

    Returns:
        a one-line report: what was loaded and what was left at its initialisation.
    """
    try:
        description, source = read_checkpoint(path)
    except AttnUNetError as e:
        raise AttnUNetError(f"init_weights: {e.problem}", e.path) from None
    defaults = _constructor_defaults()  # a description may leave out settings at their defaults
    theirs = {**defaults, **description.model}
    ours = {**defaults, **model_config}
    differing = [
        f"{k}={theirs[k]!r} (this run: {ours[k]!r})"
        for k in ARCHITECTURE_KEYS
        if k in theirs and k in ours and _normalised(theirs[k]) != _normalised(ours[k])
    ]
    if differing:
        raise AttnUNetError(f"init_weights: another architecture: {', '.join(differing)}", path)
    own = net.state_dict()
    matched = {k: v for k, v in source.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not matched:
        raise AttnUNetError("init_weights: no tensor matches this network by name and shape", path)
    net.load_state_dict(matched, strict=False)
    fresh = sorted({k.rsplit(".", 1)[0] for k in own if k not in matched})
    report = f"init_weights: loaded {len(matched)} of {len(own)} tensors from {path}"
    if fresh:
        report += f"; initialised afresh: {', '.join(fresh)}"
    unused = len(source) - len(matched)
    return report + (f"; {unused} tensors of the checkpoint unused" if unused else "")


def _constructor_defaults() -> dict[str, Any]:
    """Default model settings: the network constructor's keyword defaults, and its name."""
    params = inspect.signature(AttentionUNet.__init__).parameters.values()
    return {"name": "attention_unet", **{p.name: p.default for p in params if p.default is not p.empty}}


def _normalised(value: Any) -> Any:
    """Lists and tuples compare equal (configs give lists, checkpoints may hold either)."""
    if isinstance(value, list | tuple):
        return [_normalised(v) for v in value]
    return value


def encoder_modules(net: nn.Module) -> list[nn.Module]:
    """The contracting path of an :class:`~attnunet.models.attention_unet.AttentionUNet`: encoder
    blocks and, where there is one, the bottleneck self-attention."""
    return [m for m in (getattr(net, "encoder", None), getattr(net, "bottleneck", None)) if m is not None]


class FreezeEncoder(pl.Callback):
    """Keep the encoder's weights fixed for the first ``epochs`` epochs, then train everything.

    Frozen parameters get no gradient, so the optimiser (AdamW skips parameters without one) leaves
    them as they are; Lightning's ``BaseFinetuning`` would instead rebuild the optimiser's
    parameter groups, which this module's single-group optimiser and LR schedule do not need.
    """

    def __init__(self, epochs: int) -> None:
        if epochs < 1:
            raise ValueError(f"freeze_encoder_epochs must be at least 1 to freeze, got {epochs}")
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        frozen = trainer.current_epoch < self.epochs
        for module in encoder_modules(pl_module.net):
            for p in module.parameters():
                p.requires_grad_(not frozen)
