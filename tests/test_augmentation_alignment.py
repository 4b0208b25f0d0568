"""Training patches keep image and label aligned through every augmentation (crop, affine, flips,
intensity, noise; 3D patches and 2D slices): a label drawn from a bright structure stays on it."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from attnunet.data.datamodule import SegmentationDataModule

SPACING = 4.0  # mm, the volume's and the training grid's: no resampling before the patches
STRUCTURE_HU, SURROUNDING_HU = 250.0, -100.0  # window [-175, 250]: 1.0 and 0.18 before augmentation
# Between the two after the intensity augmentation (scale 1 +- 0.1, shift +- 0.05, noise sd 0.02).
MIDWAY = 0.55
EVERY_AUGMENTATION = {
    "affine_prob": 1.0,
    "rotate_degrees": 15.0,
    "scale_range": 0.1,
    "flip_prob": 0.5,  # each axis flipped in about half of the patches: both kinds checked
    "intensity_prob": 1.0,
    "noise_prob": 1.0,
}


def asymmetric_structure(shape: tuple[int, int, int]) -> np.ndarray:
    """An L-shaped bright block off the volume's centre: any flip, turn or shift of the image alone
    moves it off its label."""
    mask = np.zeros(shape, bool)
    mask[10:30, 12:20, 8:26] = True  # the long arm
    mask[10:18, 20:32, 8:26] = True  # the foot, on one side only
    return mask


def write_case_set(root: Path, shape: tuple[int, int, int] = (44, 40, 34)) -> None:
    """Two identical cases (one is held out for validation) in the MSD layout; the label is the
    structure's voxels, exactly."""
    mask = asymmetric_structure(shape)
    image = np.where(mask, STRUCTURE_HU, SURROUNDING_HU).astype(np.int16)
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    training = []
    for name in ("a", "b"):
        for folder, data in (("imagesTr", image), ("labelsTr", mask.astype(np.uint8))):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, affine), root / folder / f"{name}.nii.gz")
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    meta = {"labels": {"0": "background", "1": "structure"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("patch_size", [(24, 24, 24), (32, 32, 1)], ids=["3d", "2d_slices"])
def test_label_stays_on_its_structure_through_every_training_augmentation(
    patch_size: tuple[int, ...], tmp_path: Path
) -> None:
    write_case_set(tmp_path)
    datamodule = SegmentationDataModule(
        root=str(tmp_path),
        preprocessing={"spacing": [SPACING] * 3},
        patch_size=patch_size,
        samples_per_volume=8,
        positive_fraction=1.0,  # every patch centred on the structure
        val_fraction=0.5,
        cache="memory",  # preprocessed once; the random part runs at every access
        num_workers=0,
        augmentation=EVERY_AUGMENTATION,
    )
    datamodule.setup("fit")
    datamodule.train_set.transform.set_random_state(seed=0)  # the same draws at every run
    patches = [p for _ in range(3) for p in datamodule.train_set[0]]  # 24 patches, each drawn anew
    dims = 2 if patch_size[-1] == 1 else 3
    interior, exterior = 0, 0
    for patch in patches:
        image, label = patch["image"][0].numpy(), patch["label"][0].numpy().astype(bool)
        assert image.ndim == label.ndim == dims
        # Linear interpolation blends the image across an edge that nearest-neighbour leaves sharp
        # in the label: judge the voxels at least two away from the label's boundary.
        inside = ndimage.binary_erosion(label, iterations=2)
        outside = ~ndimage.binary_dilation(label, iterations=2)
        inside_ok, outside_ok = image[inside] > MIDWAY, image[outside] < MIDWAY
        assert inside_ok.all(), f"{(~inside_ok).sum()} of {inside.sum()} voxels inside the label are dark"
        assert outside_ok.all(), f"{(~outside_ok).sum()} of {outside.sum()} voxels outside the label are bright"
        interior += int(inside.sum())
        exterior += int(outside.sum())
    assert interior > 1000 and exterior > 1000  # enough of both, in patches cut across the structure
