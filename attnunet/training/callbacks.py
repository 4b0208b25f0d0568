"""TensorBoard pictures of where the attention gates look, and how focused they are."""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger

from attnunet.data.transforms import IMAGE, LABEL
from attnunet.inference.sliding_window import predict_with_attention
from attnunet.utils import overlays
from attnunet.utils.channels import argmax_channels

AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


class AttentionMapLogger(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, for the first ``num_cases`` validation cases log:

    - ``val/overlay/<case>``: CT | reference | prediction on the slice through the label centroid;
    - ``attention/<case>/<gate>``: CT | alpha over the CT on a fixed 0-1 colour scale, with a colour
      bar and alpha's range on the slice and in the volume in the title, per gate;
    - ``attention_contrast/<gate>``: mean alpha inside the organ (dilated by ``dilation`` voxels)
      divided by mean alpha outside it, averaged over the cases; rises as a gate learns to focus.

    Runs on global rank 0 only and needs a TensorBoard logger.
    """

    def __init__(self, every_n_epochs: int = 1, num_cases: int = 2, plane: str = "axial", dilation: int = 3) -> None:
        if plane not in AXES:
            raise ValueError(f"plane must be one of {sorted(AXES)}, got {plane!r}")
        self.every_n_epochs = every_n_epochs
        self.num_cases = num_cases
        self.plane = plane
        self.axis = AXES[plane]
        self.dilation = dilation

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        tb = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        val_set = getattr(trainer.datamodule, "val_set", None)
        if tb is None or val_set is None or not pl_module.net.attention_names:
            return
        contrasts: dict[str, list[float]] = {}
        step = trainer.global_step
        with torch.no_grad():
            for i in range(min(self.num_cases, len(val_set))):
                item = val_set[i]
                case = str(item.get("case_id", f"case{i}"))
                image = torch.as_tensor(item[IMAGE])[None].to(pl_module.device)
                label = torch.as_tensor(item[LABEL])[None].to(pl_module.device)
                with trainer.precision_plugin.forward_context():
                    logits, alphas = predict_with_attention(pl_module.net, image, pl_module.window)
                pred = argmax_channels(logits, 1)[0]
                ct, ref = image[0, 0].float(), label[0, 0].long()
                index = overlays.centroid_index(ref, self.axis)
                cut = [slice(None)] * 3
                cut[self.axis] = index
                spacing = self._spacing(item[IMAGE])
                ct_s = overlays.display_slice(ct[tuple(cut)].cpu(), spacing)
                ref_s = overlays.display_slice(ref[tuple(cut)].cpu(), spacing, nearest=True)
                pred_s = overlays.display_slice(pred[tuple(cut)].cpu(), spacing, nearest=True)
                where = f"{self.plane} slice {index + 1}/{ct.shape[self.axis]}"
                ct_panel = overlays.Panel(["CT", where], overlays.grey(ct_s))
                panels = [
                    ct_panel,
                    overlays.Panel(["reference"], overlays.label_overlay(ct_s, ref_s)),
                    overlays.Panel(["prediction"], overlays.label_overlay(ct_s, pred_s)),
                ]
                tb.experiment.add_image(f"val/overlay/{case}", overlays.compose(panels), step, dataformats="HWC")
                organ = self._dilate(ref > 0)
                for gate, alpha in alphas.items():
                    a = alpha[0, 0].float()
                    a_slice = a[tuple(cut)]
                    title = [gate, f"slice {overlays.value_range(a_slice)}  volume {overlays.value_range(a)}"]
                    heat = overlays.heat_overlay(ct_s, overlays.display_slice(a_slice.cpu(), spacing))
                    picture = overlays.compose([ct_panel, overlays.Panel(title, heat)], bar=True)
                    tb.experiment.add_image(f"attention/{case}/{gate}", picture, step, dataformats="HWC")
                    if organ.any() and (~organ).any():
                        contrasts.setdefault(gate, []).append(float(a[organ].mean() / a[~organ].mean().clamp(min=1e-6)))
        for gate, values in contrasts.items():
            pl_module.log(f"attention_contrast/{gate}", sum(values) / len(values), rank_zero_only=True)

    def _spacing(self, image: Any) -> tuple[float, float]:
        """Voxel size (mm) along the two axes of the logged plane; 1 mm when the image carries no affine."""
        affine = getattr(image, "affine", None)
        sizes = [1.0, 1.0, 1.0] if affine is None else nib.affines.voxel_sizes(np.asarray(affine)).tolist()
        del sizes[self.axis]
        return sizes[0], sizes[1]

    def _dilate(self, mask: torch.Tensor) -> torch.Tensor:
        k = 2 * self.dilation + 1
        return F.max_pool3d(mask[None, None].float(), k, stride=1, padding=self.dilation)[0, 0] > 0
