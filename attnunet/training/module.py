"""LightningModule: Dice+CE loss (deep-supervision aware), optimiser, sliding-window validation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from monai.data import MetaTensor
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.metrics import DiceMetric

from attnunet.checkpoint_format import KEY, CheckpointDescription
from attnunet.data.transforms import IMAGE, LABEL, VAL_WEIGHT
from attnunet.inference.postprocessing import STORED_KEY, foreground_labels, keep_largest_component, labels_that_gain
from attnunet.inference.sliding_window import SlidingWindowSpec, predict_logits
from attnunet.models.attention_unet import NetOutput
from attnunet.models.factory import build_model
from attnunet.utils.channels import argmax_channels


class SegmentationModule(pl.LightningModule):
    """Trains an :class:`~attnunet.models.attention_unet.AttentionUNet` on CT patches.

    Args:
        model: plain model config (``name`` plus constructor arguments).
        labels: ``{index: name}``, background first.
        preprocessing: :class:`~attnunet.data.transforms.PreprocessingSpec` as a dict; stored in
            checkpoints so inference repeats it exactly.
        sliding_window: :class:`~attnunet.inference.sliding_window.SlidingWindowSpec` as a dict.
        optimizer: Hydra config of a partial optimiser (``_target_``, ``_partial_: true``, ...).
        scheduler: Hydra config of a partial LR scheduler, or None; stepped every epoch.
        loss: ``lambda_dice``, ``lambda_ce`` and ``deep_supervision_weights`` (``exp`` halves
            the weight per coarser level, ``same`` weights all equally; MONAI's
            ``DeepSupervisionLoss`` weight modes). Each deep-supervision level is scored against
            the label padded like the network input and downsampled onto that level's grid
            (:func:`deep_supervision_targets`).
        channels_last: run the network in channels-last memory format.
        compile: run the network through ``torch.compile`` (training step and sliding window);
            state-dict keys are unchanged. Off by default: measured slower on CPU (see docs).
        flip_axes: spatial axes (0 = first axis of the preprocessed RAS grid) the training data
            were mirrored along; stored so that flip TTA uses only those (a model that never saw a
            mirrored abdomen misreads one).
    """

    def __init__(
        self,
        model: dict[str, Any],
        labels: dict[int, str],
        preprocessing: dict[str, Any],
        sliding_window: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        flip_axes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.labels = {int(k): str(v) for k, v in labels.items()}
        self.net = build_model({**model, "num_classes": len(self.labels)})
        self.window = SlidingWindowSpec.from_dict(sliding_window)
        self.case_split: dict[str, list[str]] | None = None  # from the datamodule at setup
        loss = loss or {}
        dice_ce = DiceCELoss(
            to_onehot_y=True,
            softmax=True,
            batch=True,
            lambda_dice=float(loss.get("lambda_dice", 1.0)),
            lambda_ce=float(loss.get("lambda_ce", 1.0)),
        )
        self.loss = dice_ce
        # One weight per output, finest first: the logits, then each deep-supervision head.
        weights = DeepSupervisionLoss(dice_ce, weight_mode=str(loss.get("deep_supervision_weights", "exp")))
        self.level_weights = weights.get_weights(1 + len(self.net.aux_heads))
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        if channels_last:
            self.net = self.net.to(memory_format=self.memory_format)
        # Module.compile keeps parameter names (checkpoints stay loadable); forward_detailed, which
        # training calls for the deep-supervision outputs, is compiled as a function of its own.
        self._forward_detailed = self.net.forward_detailed
        if compile:
            self.net.compile()
            self._forward_detailed = torch.compile(self.net.forward_detailed)
        # Per-class Dice summed over this rank's validation cases with the number of cases that
        # count (reference not empty); gathered over ranks at epoch end, then divided.
        self.val_dice = summed_dice()
        # The same after keeping each label's largest piece: decides the post-processing that the
        # checkpoint carries to inference (attnunet.inference.postprocessing).
        self.val_dice_kept = summed_dice()
        self.postprocessing: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, *S)`` -> logits ``(B, num_classes, *S)``."""
        return self.net(x.contiguous(memory_format=self.memory_format) if x.ndim == 5 else x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch[IMAGE]
        if x.ndim == 5:
            x = x.contiguous(memory_format=self.memory_format)
        loss = self.supervised_loss(self._forward_detailed(x), batch[LABEL].float())
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        return loss

    def supervised_loss(self, out: NetOutput, target: torch.Tensor) -> torch.Tensor:
        """Weighted Dice+CE of the logits ``(B, K, *S)`` against ``target`` ``(B, 1, *S)`` (float
        label values) plus that of every deep-supervision output ``(B, K, *S_k)`` against the
        label on its grid."""
        padded = self.net.padded_size(target.shape[2:])
        targets = [target, *deep_supervision_targets(target, padded, [a.shape[2:] for a in out.aux_logits])]
        outputs = [out.logits, *out.aux_logits]
        return sum(w * self.loss(o.float(), t) for w, o, t in zip(self.level_weights, outputs, targets))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        num_classes = len(self.labels)
        if VAL_WEIGHT in batch and not bool(torch.as_tensor(batch[VAL_WEIGHT]).any()):
            # A DDP rank's padding case: it scores empty masks, which count for no class (Dice of
            # an empty reference is NaN and left out), so every rank still has a metric buffer to
            # gather at the epoch end.
            empty = torch.zeros(1, num_classes, 1, 1, 1, device=self.device)
            self.val_dice(empty, empty)
            self.val_dice_kept(empty, empty)
            return
        # Plain tensors: MetaTensors would leak into logged values and from there into checkpoints,
        # which then no longer load with weights_only=True.
        image, label = as_plain_tensor(batch[IMAGE]), as_plain_tensor(batch[LABEL])
        logits = predict_logits(self.net, image, self.window)
        pred = argmax_channels(logits, 1)  # (B, *S)
        foreground = foreground_labels(self.labels)
        kept = torch.stack([keep_largest_component(case[None], foreground)[0] for case in pred])
        ref = F.one_hot(label[:, 0].long(), num_classes).movedim(-1, 1)
        self.val_dice(F.one_hot(pred, num_classes).movedim(-1, 1), ref)
        self.val_dice_kept(F.one_hot(kept.long(), num_classes).movedim(-1, 1), ref)

    def on_validation_epoch_end(self) -> None:
        # DiceMetric gathers every rank's per-case scores itself (an all-gather under DDP), so the
        # sum over cases and the count of non-empty references cover the whole validation set.
        if self.val_dice.get_buffer() is None:  # no validation step ran (on any rank)
            return
        dice, dice_kept = mean_dice_per_label(self.val_dice), mean_dice_per_label(self.val_dice_kept)
        for k, value in dice.items():
            self.log(f"val/dice_{self.labels[k]}", value, sync_dist=False)
        self.log("val/dice", mean_or_zero(dice), prog_bar=True, sync_dist=False)
        self.log("val/dice_largest_component", mean_or_zero(dice_kept), sync_dist=False)
        # Decided on every rank from the same gathered figures, so all ranks store the same choice.
        self.postprocessing = {
            STORED_KEY: labels_that_gain(dice, dice_kept),
            "val_dice": {str(k): v for k, v in dice.items()},
            "val_dice_largest_component": {str(k): v for k, v in dice_kept.items()},
        }
        self.val_dice.reset()
        self.val_dice_kept.reset()

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def setup(self, stage: str) -> None:
        """Keep the datamodule's train/validation case ids (set up just before) for the checkpoint."""
        datamodule = getattr(self.trainer, "datamodule", None)
        self.case_split = getattr(datamodule, "case_split", None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make the checkpoint self-describing with plain data only (loadable with weights_only)."""
        checkpoint[KEY] = self.describe()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run keeps the post-processing chosen before, until its next validation."""
        self.postprocessing = dict((checkpoint.get(KEY) or {}).get("postprocessing") or {})

    def description(self) -> CheckpointDescription:
        """What inference needs besides the weights: model, labels, preprocessing, window and the
        post-processing chosen at the latest validation (empty before the first)."""
        return CheckpointDescription(
            model={**self.hparams.model, "num_classes": len(self.labels)},
            labels=dict(self.labels),
            preprocessing=dict(self.hparams.preprocessing),
            sliding_window=self.window.to_dict(),
            split=self.case_split,
            postprocessing=self.postprocessing,
            flip_axes=[int(a) for a in self.hparams.flip_axes],
        )

    def describe(self) -> dict[str, Any]:
        """:meth:`description` as stored in a checkpoint (plain data)."""
        return self.description().to_dict()


def deep_supervision_targets(
    target: torch.Tensor, padded: Sequence[int], sizes: Sequence[Sequence[int]]
) -> list[torch.Tensor]:
    """Label ``(B, 1, *S)`` -> one target ``(B, 1, *S_k)`` per deep-supervision grid ``S_k`` in ``sizes``.

    The network runs on ``padded`` (``S`` rounded up to a multiple of its total stride, zeros
    appended at the end of each axis) and voxel ``i`` of a level whose grid is ``f`` times coarser
    covers padded voxels ``f * i`` to ``f * i + f - 1``. The label is therefore padded the same way
    (with background) before nearest-neighbour downsampling, which picks voxel ``f * i + f // 2``:
    inside that block. Resizing the unpadded label instead would stretch it over the padding, off
    the voxels the logits describe, whenever ``S`` is not a multiple of the total stride.
    """
    pad: list[int] = []
    for n, p in zip(reversed(target.shape[2:]), reversed(padded), strict=True):  # F.pad: last axis first
        pad += [0, int(p) - int(n)]
    on_padded = F.pad(target, pad) if any(pad) else target
    return [F.interpolate(on_padded, size=tuple(size), mode="nearest-exact") for size in sizes]


def summed_dice() -> DiceMetric:
    """Per-class Dice summed over cases with the count of cases whose reference holds the class."""
    return DiceMetric(include_background=False, reduction="sum_batch", get_not_nans=True, ignore_empty=True)


def mean_dice_per_label(metric: DiceMetric) -> dict[int, float]:
    """``{label value: mean Dice}`` over the cases whose reference holds the label (others left out)."""
    total, count = (t.double() for t in metric.aggregate())
    return {k + 1: float(total[k] / count[k]) for k in range(len(total)) if count[k] > 0}


def mean_or_zero(dice: dict[int, float]) -> torch.Tensor:
    """Mean over labels as a float32 scalar tensor (0 when no label had a reference)."""
    return torch.tensor(sum(dice.values()) / len(dice) if dice else 0.0, dtype=torch.float32)


def as_plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """Drop MONAI's metadata wrapper, keeping the data."""
    return t.as_tensor() if isinstance(t, MetaTensor) else t
