"""A reference label and one or more predicted segmentations over a CT, as one PNG: the axial slice
through the reference's centroid, each panel titled with its Dice against the reference.

    python scripts/overlay_figure.py ct.nii.gz reference.nii.gz out.png name1=pred1.nii.gz name2=pred2.nii.gz

All volumes must share the CT's grid (``attnunet-infer`` writes its predictions on the input grid).
Foreground is every label above 0. Used for the sim-to-real pictures of docs/explanation/phantom.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from attnunet.data.transforms import PreprocessingSpec
from attnunet.inference.preview import save_png
from attnunet.utils import overlays

WINDOW = PreprocessingSpec().intensity_window  # the default preprocessing window, HU


def ras(image: nib.Nifti1Image) -> np.ndarray:
    """Voxels in RAS order (as the display helpers expect)."""
    return np.asanyarray(nib.as_closest_canonical(image).dataobj)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    both = int(a.sum()) + int(b.sum())
    return 2 * int((a & b).sum()) / both if both else float("nan")


def figure(ct_path: Path, reference_path: Path, predictions: dict[str, Path]) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8: CT | reference | each prediction, on one axial slice."""
    ct_image = nib.load(ct_path)
    spacing = nib.affines.voxel_sizes(nib.as_closest_canonical(ct_image).affine)
    ct = (torch.from_numpy(ras(ct_image).astype(np.float32)) - WINDOW[0]) / (WINDOW[1] - WINDOW[0])
    reference = ras(nib.load(reference_path)) > 0
    for path in predictions.values():
        if nib.load(path).shape != ct_image.shape:
            raise SystemExit(f"error: {path}: shape {nib.load(path).shape} is not the CT's {ct_image.shape}")
    z = overlays.centroid_index(torch.from_numpy(reference.astype(np.uint8)), axis=2)
    pixel = (float(spacing[0]), float(spacing[1]))
    ct_s = overlays.display_slice(ct[:, :, z], pixel)

    def labels(mask: np.ndarray) -> torch.Tensor:
        return overlays.display_slice(torch.from_numpy(mask[:, :, z].astype(np.uint8)), pixel, nearest=True)

    panels = [
        overlays.Panel(["CT", f"axial slice {z + 1}/{ct.shape[2]}"], overlays.grey(ct_s)),
        overlays.Panel(
            ["reference", f"{reference.sum() * np.prod(spacing) / 1000:.1f} mL"],
            overlays.label_overlay(ct_s, labels(reference)),
        ),
    ]
    for name, path in predictions.items():
        mask = ras(nib.load(path)) > 0
        volume = mask.sum() * np.prod(spacing) / 1000
        panels.append(
            overlays.Panel(
                [name, f"Dice {dice(mask, reference):.3f}, {volume:.1f} mL"], overlays.label_overlay(ct_s, labels(mask))
            )
        )
    return overlays.compose(panels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ct", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("predictions", nargs="+", help="name=path of a predicted segmentation")
    args = parser.parse_args()
    predictions = dict(item.split("=", 1) for item in args.predictions)
    save_png(figure(args.ct, args.reference, {k: Path(v) for k, v in predictions.items()}), args.output)


if __name__ == "__main__":
    main()
