"""The synthetic pancreas CT generator: anatomy, appearance, hardness and the dataset layouts."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from attnunet.data.synthetic import make_case, reorient, write_dataset
from attnunet.data.synthetic.anatomy import Tissue, make_anatomy
from attnunet.data.synthetic.appearance import sample_appearance
from attnunet.data.synthetic.hardness import best_interval_dice
from attnunet.utils.atomic import NEW_FILE_MODE

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The first cases of ``attnunet-synth seed=123`` (the issue's hardness check), generated once."""
    return [make_case(seed=123, index=i) for i in range(3)]


def coarse_anatomy(seed: int) -> object:
    """An anatomy on a 2.5 mm grid: same shapes and relations as a full case, quicker to draw."""
    axes = (np.arange(-170, 170, 2.5), np.arange(-130, 130, 2.5), np.arange(-70, 70, 2.5))
    return make_anatomy(axes, np.random.default_rng(seed))


def test_same_seed_same_case_other_seed_other_case() -> None:
    a_img, a_lab, a_aff = make_case(seed=1, index=0)
    b_img, b_lab, b_aff = make_case(seed=1, index=0)
    c_img, c_lab, _ = make_case(seed=2, index=0)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    np.testing.assert_array_equal(a_aff, b_aff)
    assert a_img.shape != c_img.shape or not np.array_equal(a_img, c_img)


def test_case_is_abdominal_ct_in_hounsfield_units(cases) -> None:
    for image, label, affine in cases:
        assert image.dtype == np.int16 and label.dtype == np.uint8
        assert image.min() <= -900 and image.max() >= 400  # air/gas and bone
        assert set(np.unique(label)) == {0, 1}
        pancreas_ml = (label == 1).sum() * abs(np.linalg.det(affine[:3, :3])) / 1000
        assert 15 < pancreas_ml < 150  # adult pancreas volumes are roughly 40-120 mL, less when atrophic
        assert ndimage.label(label == 1, np.ones((3, 3, 3)))[1] <= 3  # one gland (a cut-off bit at most)
        spacing = np.abs(np.diag(affine)[:3])
        assert spacing[2] > spacing[0]  # thicker slices than in-plane pixels


def test_pancreas_is_not_found_by_the_best_hu_interval(cases) -> None:
    """Issue #14: best interval between pancreas HU quantiles, with and without the largest connected
    component, scores Dice < 0.3 on every generated case (real CT: 0.01 / 0.02, below)."""
    for image, label, _ in cases:
        plain, _ = best_interval_dice(image, label == 1)
        largest, _ = best_interval_dice(image, label == 1, largest_component=True)
        assert plain < 0.3 and largest < 0.3, (plain, largest)


def test_hu_interval_baseline_on_the_real_ct() -> None:
    """The same measure on the real CT kept in tests/data: its pancreas is not separable either."""
    image = np.asarray(nib.load(DATA / "abdomen_ct.nii.gz").dataobj)
    label = np.asarray(nib.load(DATA / "abdomen_pancreas.nii.gz").dataobj) == 1
    plain, _ = best_interval_dice(image, label)
    largest, _ = best_interval_dice(image, label, largest_component=True, quantiles=[1, 10, 25, 50, 75, 90, 99])
    assert plain < 0.1 and largest < 0.1


def test_best_interval_finds_an_intensity_defined_organ() -> None:
    """The baseline is not vacuous: an organ with its own HU range is found (Dice near 1)."""
    rng = np.random.default_rng(0)
    image = rng.normal(0, 5, (40, 40, 40))
    organ = np.zeros(image.shape, bool)
    organ[10:20, 10:25, 5:30] = True
    image[organ] += 100
    image[30:35, 30:35, 30:35] += 100  # a second, smaller blob: the largest component drops it
    assert best_interval_dice(image, organ)[0] > 0.9
    assert best_interval_dice(image, organ, largest_component=True)[0] > 0.97


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pancreas_lies_among_its_real_neighbours(seed: int) -> None:
    anatomy = coarse_anatomy(seed)
    tissue, pancreas = anatomy.tissue, anatomy.pancreas
    assert pancreas.any()
    shell = ndimage.binary_dilation(pancreas, iterations=2) & ~pancreas
    around = set(np.unique(tissue[shell]).tolist())
    # Splenic vein / SMV along its back, duodenum or bowel, fat; never inside liver or kidney.
    assert {Tissue.PORTAL_VEIN, Tissue.BOWEL_WALL, Tissue.VISCERAL_FAT} <= around
    inside = set(np.unique(tissue[pancreas]).tolist())
    assert inside <= {Tissue.PANCREAS, Tissue.PANCREAS_FAT}
    # Head right of the midline vessels, tail left (RAS: +x is the patient's right) and higher.
    line = anatomy.centerline
    assert line[len(line) // 5, 0] > line[-1, 0] + 60
    assert line[-1, 2] > line[len(line) // 5, 2]
    # Posterior relations: the vein touches the back of the gland, not only its front.
    xyz = np.argwhere(pancreas)
    cy = xyz[:, 1].mean()
    vein = np.argwhere(shell & (tissue == Tissue.PORTAL_VEIN))
    assert (vein[:, 1] < cy).mean() > 0.5


def test_pancreas_intensities_overlap_its_neighbours(cases) -> None:
    """The gland's median HU lies inside the 10-90 % HU range of some large neighbour (liver,
    spleen, bowel, vessels or muscle within 2 cm) in every case."""
    for image, label, affine in cases:
        pancreas = label == 1
        spacing = np.abs(np.diag(affine)[:3])
        near = ndimage.binary_dilation(pancreas, iterations=int(20 / spacing.min())) & ~pancreas
        soft = near & (image > -30) & (image < 300)
        median = np.median(image[pancreas])
        lo, hi = np.percentile(image[soft], [10, 90])
        assert lo <= median <= hi
        assert soft.sum() > 5 * pancreas.sum()


def test_contrast_phases_and_randomisation() -> None:
    rng = np.random.default_rng(0)
    plain = sample_appearance(rng, "non_contrast")
    arterial = sample_appearance(rng, "arterial")
    venous = sample_appearance(rng, "portal_venous")
    assert plain["mean"][Tissue.ARTERY] < 60 < venous["mean"][Tissue.PORTAL_VEIN]
    assert arterial["mean"][Tissue.ARTERY] > 200 and arterial["mean"][Tissue.ARTERY] > venous["mean"][Tissue.ARTERY]
    assert venous["mean"][Tissue.PORTAL_VEIN] > venous["mean"][Tissue.ARTERY] - 60
    phases = {sample_appearance(rng)["phase"] for _ in range(40)}
    assert phases == {"non_contrast", "arterial", "portal_venous"}
    means = np.array([sample_appearance(rng, "portal_venous")["mean"][Tissue.PANCREAS] for _ in range(40)])
    assert means.std() > 5  # per-case intensity randomisation


def test_lesions_lie_inside_the_pancreas_region() -> None:
    labels = [make_case(seed=0, index=i, lesions=True)[1] for i in range(3)]
    assert any((lab == 2).any() for lab in labels)
    for lab in labels:
        assert set(np.unique(lab)) <= {0, 1, 2}
        lesion = lab == 2
        if lesion.any():
            assert (ndimage.binary_dilation(lesion, iterations=2) & (lab == 1)).any()


def test_reorient_keeps_world_coordinates(cases) -> None:
    image, label, affine = cases[0]
    for code in ("LPS", "SRA", "PLI"):
        img2, lab2, aff2 = reorient(image, label, affine, code)
        assert nib.aff2axcodes(aff2) == tuple(code)
        # The world position of a labelled voxel is the same in both storages.
        idx = np.argwhere(lab2 == 1)[0]
        world = aff2 @ np.r_[idx, 1]
        back = np.rint(np.linalg.inv(affine) @ world)[:3].astype(int)
        assert label[tuple(back)] == 1 and image[tuple(back)] == img2[tuple(idx)]


def test_dataset_layout_orientation_variety_and_atomic_write(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    meta_path = write_dataset(root, num_cases=6, seed=0)
    meta = json.loads(meta_path.read_text())
    assert meta["labels"] == {"0": "background", "1": "pancreas"}
    assert meta["numTraining"] == 6 == len(meta["training"])
    codes, spacings = set(), set()
    for entry in meta["training"]:
        img = nib.load(root / entry["image"])
        lab = nib.load(root / entry["label"])
        assert img.shape == lab.shape
        np.testing.assert_allclose(img.affine, lab.affine)
        assert img.header.get_data_dtype() == np.int16
        codes.add(nib.aff2axcodes(img.affine))
        spacings.add(tuple(np.round(img.header.get_zooms(), 2)))
    assert len(codes) >= 3 and codes != {("R", "A", "S")}
    assert len(spacings) >= 3
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary folder left behind
    assert root.stat().st_mode & 0o777 == NEW_FILE_MODE | (NEW_FILE_MODE & 0o444) >> 2  # not mkdtemp's 0700
    with pytest.raises(FileExistsError):
        write_dataset(root, num_cases=1)
