"""LightningModule: Dice+CE loss (deep-supervision aware), optimiser, sliding-window validation."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from monai.data import MetaTensor
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.metrics import compute_dice

import attnunet
from attnunet.checkpoint_format import CHECKPOINT_FORMAT, CHECKPOINT_KEY
from attnunet.data.transforms import IMAGE, LABEL
from attnunet.inference.sliding_window import SlidingWindowSpec, predict_logits
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
            the weight per coarser level, ``same`` weights all equally).
        channels_last: run the network in channels-last memory format.
        compile: run the network through ``torch.compile`` (training step and sliding window);
            state-dict keys are unchanged. Off by default: measured slower on CPU (see docs).
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.labels = {int(k): str(v) for k, v in labels.items()}
        self.net = build_model({**model, "num_classes": len(self.labels)})
        self.window = SlidingWindowSpec.from_dict(sliding_window)
        loss = loss or {}
        dice_ce = DiceCELoss(
            to_onehot_y=True,
            softmax=True,
            batch=True,
            lambda_dice=float(loss.get("lambda_dice", 1.0)),
            lambda_ce=float(loss.get("lambda_ce", 1.0)),
        )
        self.loss = DeepSupervisionLoss(dice_ce, weight_mode=str(loss.get("deep_supervision_weights", "exp")))
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        if channels_last:
            self.net = self.net.to(memory_format=self.memory_format)
        # Module.compile keeps parameter names (checkpoints stay loadable); forward_detailed, which
        # training calls for the deep-supervision outputs, is compiled as a function of its own.
        self._forward_detailed = self.net.forward_detailed
        if compile:
            self.net.compile()
            self._forward_detailed = torch.compile(self.net.forward_detailed)
        num_fg = len(self.labels) - 1
        self.register_buffer("_dice_sum", torch.zeros(num_fg, dtype=torch.float64), persistent=False)
        self.register_buffer("_dice_count", torch.zeros(num_fg, dtype=torch.float64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, *S)`` -> logits ``(B, num_classes, *S)``."""
        return self.net(x.contiguous(memory_format=self.memory_format) if x.ndim == 5 else x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch[IMAGE]
        if x.ndim == 5:
            x = x.contiguous(memory_format=self.memory_format)
        out = self._forward_detailed(x)
        target = batch[LABEL].float()
        loss = self.loss([out.logits.float(), *(a.float() for a in out.aux_logits)], target)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # Plain tensors: MetaTensors would leak into logged values and from there into checkpoints,
        # which then no longer load with weights_only=True.
        image, label = as_plain_tensor(batch[IMAGE]), as_plain_tensor(batch[LABEL])
        logits = predict_logits(self.net, image, self.window)
        num_classes = len(self.labels)
        pred = F.one_hot(argmax_channels(logits, 1), num_classes).movedim(-1, 1)
        ref = F.one_hot(label[:, 0].long(), num_classes).movedim(-1, 1)
        dice = compute_dice(pred, ref, include_background=False, ignore_empty=True)  # (B, K-1), NaN: empty ref
        valid = ~torch.isnan(dice)
        self._dice_sum += torch.where(valid, dice, 0).sum(0).to(torch.float64)
        self._dice_count += valid.sum(0).to(torch.float64)

    def on_validation_epoch_end(self) -> None:
        # Sum over ranks before dividing: correct for any split of the cases across DDP ranks.
        total = self.trainer.strategy.reduce(self._dice_sum.clone(), reduce_op="sum")
        count = self.trainer.strategy.reduce(self._dice_count.clone(), reduce_op="sum")
        per_class = total / count.clamp(min=1)
        present = count > 0
        for k, name in sorted(self.labels.items())[1:]:
            if present[k - 1]:
                self.log(f"val/dice_{name}", per_class[k - 1].float(), sync_dist=False)
        mean = per_class[present].mean() if present.any() else torch.zeros((), device=total.device)
        self.log("val/dice", mean.float(), prog_bar=True, sync_dist=False)
        self._dice_sum.zero_()
        self._dice_count.zero_()

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make the checkpoint self-describing with plain data only (loadable with weights_only)."""
        checkpoint[CHECKPOINT_KEY] = self.describe()

    def describe(self) -> dict[str, Any]:
        """What inference needs besides the weights: model, labels, preprocessing, window."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": attnunet.__version__,
            "model": {**self.hparams.model, "num_classes": len(self.labels)},
            "labels": {str(k): v for k, v in self.labels.items()},
            "preprocessing": dict(self.hparams.preprocessing),
            "sliding_window": self.window.to_dict(),
        }


def as_plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """Drop MONAI's metadata wrapper, keeping the data."""
    return t.as_tensor() if isinstance(t, MetaTensor) else t
