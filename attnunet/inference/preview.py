"""``<case>_preview.png``: CT, predicted contour and one attention overlay per gate, no viewer needed."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from attnunet.inference.predictor import Prediction
from attnunet.utils import overlays
from attnunet.utils.atomic import atomic_target


def render_preview(ct_hu: np.ndarray, prediction: Prediction, window: tuple[float, float]) -> np.ndarray:
    """RGB ``(H, W * (2 + gates), 3)`` uint8: CT | CT + predicted labels | CT + alpha per gate, on the
    axial slice through the predicted foreground centroid (the middle slice when nothing was found).
    ``ct_hu`` is the input volume on the prediction's grid."""
    ras_codes = nib.orientations.axcodes2ornt("RAS")
    to_ras = nib.orientations.ornt_transform(nib.io_orientation(prediction.input_affine), ras_codes)

    def ras(volume: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(nib.orientations.apply_orientation(volume, to_ras)))

    lo, hi = window
    ct = (ras(ct_hu.astype(np.float32)) - lo) / (hi - lo)
    labels = ras(prediction.labels)
    z = overlays.centroid_index(labels, axis=2)
    ct_s = overlays.to_display(ct[:, :, z])
    panels = [overlays.grey(ct_s), overlays.label_overlay(ct_s, overlays.to_display(labels[:, :, z]))]
    for alpha in prediction.attention.values():
        panels.append(overlays.heat_overlay(ct_s, overlays.to_display(ras(alpha)[:, :, z])))
    rgb = torch.cat(panels, 2).permute(1, 2, 0).clamp(0, 1)
    return (rgb.numpy() * 255).round().astype(np.uint8)


def save_png(rgb: np.ndarray, path: Path) -> None:
    """Write atomically (temporary name, then rename)."""
    with atomic_target(path, suffix=".png") as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
