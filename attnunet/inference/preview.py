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


def render_preview(
    ct_hu: np.ndarray,
    prediction: Prediction,
    window: tuple[float, float],
    focus: np.ndarray | None = None,
    name: str = "CT",
) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8: CT | CT + predicted labels | CT + alpha per gate, titled, with a 0-1
    colour bar, on the axial slice where ``focus`` (a reference label volume on the prediction's grid,
    outlined in white on every panel but the first) has most voxels; without it, through the
    predicted foreground centroid (the middle slice when nothing was found). Each
    gate's title gives alpha's range on the slice and in the volume, both within the region the
    network ran on. Panels have square pixels in millimetres and a short side of at least
    :data:`~attnunet.utils.overlays.SHORT_SIDE`. ``ct_hu`` ``(X, Y, Z)`` is the input volume on the
    prediction's grid; ``name`` heads the first panel."""
    ornt = nib.io_orientation(prediction.input_affine)
    to_ras = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt("RAS"))
    spacing = np.empty(3)
    spacing[to_ras[:, 0].astype(int)] = nib.affines.voxel_sizes(prediction.input_affine)

    def ras(volume: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(nib.orientations.apply_orientation(volume, to_ras)))

    lo, hi = window
    ct = (ras(ct_hu.astype(np.float32)) - lo) / (hi - lo)
    labels = ras(prediction.labels)
    z = overlays.centroid_index(labels, axis=2) if focus is None else overlays.fullest_index(ras(focus), axis=2)
    pixel = (float(spacing[0]), float(spacing[1]))
    ct_s = overlays.display_slice(ct[:, :, z], pixel)
    reference = None if focus is None else overlays.display_slice(ras(focus > 0)[:, :, z], pixel, nearest=True)

    def outlined(rgb: torch.Tensor) -> torch.Tensor:
        return rgb if reference is None else overlays.outline(rgb, reference)

    predicted = overlays.label_overlay(ct_s, overlays.display_slice(labels[:, :, z], pixel, nearest=True))
    panels = [
        overlays.Panel([name, f"axial slice {z + 1}/{ct.shape[2]}"], overlays.grey(ct_s)),
        overlays.Panel(["predicted labels", *([] if focus is None else ["reference: white"])], outlined(predicted)),
    ]
    box = prediction.network_box or tuple(slice(None) for _ in range(3))
    ran_s = ras(prediction.network_region())[:, :, z]
    for gate in prediction.attention:
        alpha = prediction.alpha(gate)
        a = ras(alpha)
        seen = alpha[box]
        volume_range = overlays.value_range(seen) if seen.size else "-"
        slice_range = overlays.value_range(a[:, :, z][ran_s]) if ran_s.any() else "-"
        panels.append(
            overlays.Panel(
                [gate, f"slice {slice_range}  volume {volume_range}"],
                outlined(overlays.heat_overlay(ct_s, overlays.display_slice(a[:, :, z], pixel))),
            )
        )
    return overlays.compose(panels, bar=bool(prediction.attention))


def save_png(rgb: np.ndarray, path: Path) -> None:
    """Write atomically (temporary name, then rename)."""
    with atomic_target(path, suffix=".png") as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
