"""Per-patch appearance from the phantoms' tissue maps: the maps, the rendering, the deformation and
the datamodule option (``data.appearance``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai import transforms as mt

from attnunet.data.datamodule import SegmentationDataModule
from attnunet.data.transforms import AugmentationSpec, training_sampling
from attnunet.errors import AttnUNetError
from attnunet.phantom import TISSUE_DIR
from attnunet.phantom.canvas import Tissue
from attnunet.phantom.randomize import (
    NEIGHBOURS,
    TISSUE,
    AppearanceSpec,
    RandRenderTissued,
    RandSmoothDeformd,
    patch_randomization,
    smooth_sampling_grid,
)

# Random draws without texture or scanner effects: every voxel of a class gets the class's HU, windowed.
PLAIN = AppearanceSpec(
    prior_fraction=0.0,
    random_texture_hu=(0.0, 0.0),
    in_plane_psf_mm=(0.0, 0.0),
    thickness_mm=(0.0, 0.0),
    bias_hu=0.0,
    noise_hu=(0.0, 0.0),
    gamma_std=0.0,
    neighbour_same_prob=0.0,
    deform_prob=0.0,
)
WINDOW = (-175.0, 250.0)


def tissue_phantom(shape: tuple[int, ...] = (40, 40, 40)) -> np.ndarray:
    """Fat with a muscle slab, a liver block, a pancreas box and bowel around it: ``(X, Y, Z)`` uint8."""
    t = np.full(shape, Tissue.VISCERAL_FAT, np.uint8)
    t[:, :6] = Tissue.MUSCLE
    t[:15, 10:30, 5:35] = Tissue.LIVER
    t[20:30, 15:25, 15:25] = Tissue.BOWEL_WALL
    t[22:28, 17:23, 17:23] = Tissue.PANCREAS
    return t


def render(spec: AppearanceSpec, tissue: np.ndarray, seed: int) -> np.ndarray:
    r = RandRenderTissued(spec, (3.0, 3.0, 3.0), WINDOW)
    r.set_random_state(seed)
    return r({TISSUE: torch.from_numpy(tissue)[None]})["image"][0].numpy()


def test_the_written_tissue_map_lies_on_the_label_grid_and_holds_the_pancreas(tiny_dataset: Path) -> None:
    for label_path in sorted((tiny_dataset / "labelsTr").iterdir()):
        label, tissue = nib.load(label_path), nib.load(tiny_dataset / TISSUE_DIR / label_path.name)
        assert tissue.shape == label.shape and tissue.get_data_dtype() == np.uint8
        np.testing.assert_allclose(tissue.affine, label.affine, atol=1e-5)
        lab, tis = np.asarray(label.dataobj), np.asarray(tissue.dataobj)
        gland = np.isin(tis[lab > 0], (Tissue.PANCREAS, Tissue.PANCREAS_FAT, Tissue.LESION))
        assert gland.mean() > 0.7  # the label outlines the gland the image was rendered from
        assert np.isin(tis[lab == 0], (Tissue.PANCREAS,)).mean() < 0.01


def test_without_scanner_effects_the_image_is_a_function_of_the_tissue_map() -> None:
    tissue = tissue_phantom()
    for seed in range(6):
        image = render(PLAIN, tissue, seed)
        assert image.shape == tissue.shape and image.dtype == np.float32
        for t in np.unique(tissue):
            values = image[tissue == t]
            assert values.max() - values.min() < 1e-6, Tissue(t).name


def test_random_draws_give_the_pancreas_no_intensity_of_its_own() -> None:
    tissue = tissue_phantom()
    random_only = replace(PLAIN, random_hu=(-150.0, 200.0))
    pancreas = [float(render(random_only, tissue, s)[tissue == Tissue.PANCREAS].mean()) for s in range(30)]
    hu = np.asarray(pancreas) * (WINDOW[1] - WINDOW[0]) + WINDOW[0]
    assert hu.min() >= -150 - 1e-3 and hu.max() <= 200 + 1e-3
    assert hu.std() > 60  # uniform over 350 HU: about 100 HU of spread
    priors_only = replace(PLAIN, prior_fraction=1.0, prior_jitter_hu=0.0)
    calibrated = [float(render(priors_only, tissue, s)[tissue == Tissue.PANCREAS].mean()) for s in range(30)]
    assert np.ptp(calibrated) < np.ptp(pancreas)


def test_neighbours_can_take_the_pancreas_intensity() -> None:
    tissue = tissue_phantom()
    image = render(replace(PLAIN, neighbour_same_prob=1.0), tissue, 0)
    pancreas = image[tissue == Tissue.PANCREAS].mean()
    for t in (Tissue.LIVER, Tissue.BOWEL_WALL, Tissue.MUSCLE):
        assert t in NEIGHBOURS
        assert abs(image[tissue == t].mean() - pancreas) < 25 / (WINDOW[1] - WINDOW[0])
    assert abs(image[tissue == Tissue.VISCERAL_FAT].mean() - pancreas) > 0.05  # fat is not a neighbour


def test_rendering_is_reproducible_from_the_random_state_and_differs_between_draws() -> None:
    tissue = tissue_phantom()
    spec = AppearanceSpec()
    np.testing.assert_array_equal(render(spec, tissue, 5), render(spec, tissue, 5))
    assert not np.allclose(render(spec, tissue, 5), render(spec, tissue, 6))
    full = render(spec, tissue, 7)
    assert full.min() >= 0.0 and full.max() <= 1.0


def test_thick_slices_blur_along_one_axis_only() -> None:
    thick = replace(PLAIN, thickness_mm=(12.0, 12.0))
    r = RandRenderTissued(thick, (3.0, 3.0, 3.0), WINDOW)
    sigma = r._psf_sigma(np.random.default_rng(0), 3)
    assert sorted(sigma.tolist())[-1] == pytest.approx(12.0 / 2.355 / 3.0)
    assert sorted(sigma.tolist())[:2] == [0.0, 0.0]


def test_deformation_of_zero_is_the_identity() -> None:
    grid = smooth_sampling_grid((5, 6, 7), 0.0, 5, np.random.default_rng(0))
    volume = torch.arange(5 * 6 * 7.0).view(1, 1, 5, 6, 7)
    moved = torch.nn.functional.grid_sample(volume, grid, mode="nearest", align_corners=True)
    torch.testing.assert_close(moved, volume)


def test_deformation_moves_label_and_tissue_map_together() -> None:
    tissue = torch.from_numpy(tissue_phantom())[None]
    label = (tissue == Tissue.PANCREAS).to(torch.uint8)
    deform = RandSmoothDeformd(["label", TISSUE], prob=1.0, displacement_vox=(2.0, 2.0))
    deform.set_random_state(0)
    out = deform({"label": label, TISSUE: tissue})
    assert not torch.equal(out[TISSUE], tissue)  # it moved
    # Nearest neighbour: no new classes, but air (0) where the border pulls in voxels from outside.
    assert set(out[TISSUE].unique().tolist()) <= set(tissue.unique().tolist()) | {Tissue.AIR}
    torch.testing.assert_close(out["label"] == 1, out[TISSUE] == Tissue.PANCREAS)


def test_patches_keep_image_and_label_aligned_through_crop_affine_deformation_and_rendering() -> None:
    tissue = torch.from_numpy(tissue_phantom((48, 48, 48)))[None]
    label = (tissue == Tissue.PANCREAS).to(torch.uint8)
    spec = replace(PLAIN, deform_prob=1.0, random_hu=(-150.0, 230.0))  # inside the window: no class clips
    steps = training_sampling(
        (32, 32, 32),
        2,
        1.0,
        AugmentationSpec(affine_prob=1.0, intensity_prob=0.0, noise_prob=0.0),
        maps=[TISSUE],
        patch_steps=lambda ndim: patch_randomization(spec, (3.0, 3.0, 3.0), WINDOW, "label", ndim),
    )
    pipeline = mt.Compose(steps)
    pipeline.set_random_state(3)
    for patch in pipeline({"image": tissue.float(), "label": label, TISSUE: tissue}):
        assert set(patch) >= {"image", "label"} and TISSUE not in patch
        image, lab = patch["image"][0], patch["label"][0]
        assert lab.sum() > 0
        values, counts = image[lab == 1].unique(return_counts=True)
        gland_value = values[counts.argmax()]
        assert counts.max() >= 0.95 * lab.sum()  # one class inside the label ...
        assert (image[lab == 0] == gland_value).float().mean() < 0.05  # ... and hardly any outside


def test_appearance_renders_training_patches_and_leaves_validation_images_as_stored(tiny_dataset: Path) -> None:
    common = {
        "root": str(tiny_dataset),
        "preprocessing": {"spacing": [4.0, 4.0, 4.0]},
        "patch_size": (32, 32, 32),
        "cache": "none",
        "num_workers": 0,
        "val_fraction": 0.25,
        "augmentation": {"affine_prob": 0.0, "intensity_prob": 0.0, "noise_prob": 0.0},
    }
    stored = SegmentationDataModule(**common)
    rendered = SegmentationDataModule(**common, appearance={"prior_fraction": 0.0})
    for dm in (stored, rendered):
        dm.setup()
    torch.testing.assert_close(stored.val_set[0]["image"], rendered.val_set[0]["image"])
    patch = rendered.train_set[0][0]
    assert TISSUE not in patch and patch["image"].shape == (1, 32, 32, 32)
    assert float(patch["image"].min()) >= 0.0 and float(patch["image"].max()) <= 1.0


def test_appearance_needs_a_tissue_map_per_case(tiny_dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "no_tissue"
    for folder in ("imagesTr", "labelsTr"):
        (copy / folder).mkdir(parents=True)
        for f in (tiny_dataset / folder).iterdir():
            (copy / folder / f.name).symlink_to(f)
    (copy / "dataset.json").symlink_to(tiny_dataset / "dataset.json")
    dm = SegmentationDataModule(root=str(copy), cache="none", num_workers=0, appearance={})
    with pytest.raises(AttnUNetError, match="tissue map per case") as e:
        dm.setup()
    assert "tissuesTr" in str(e.value)


def test_appearance_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown data.appearance settings"):
        AppearanceSpec.from_dict({"prior_fraktion": 0.5})
    with pytest.raises(ValueError, match="prior_fraction"):
        AppearanceSpec.from_dict({"prior_fraction": 1.5})
    assert AppearanceSpec.from_dict({"random_hu": [-100, 100]}).random_hu == (-100.0, 100.0)
    with pytest.raises(AttnUNetError, match="normalization=window"):
        SegmentationDataModule(root=".", appearance={}, preprocessing={"normalization": "zscore"})
