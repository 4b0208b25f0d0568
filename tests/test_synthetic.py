"""The synthetic pancreas CT generator: anatomy, appearance, hardness and the dataset layouts."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from attnunet.phantom import implants, make_case, reorient, write_dataset, writer
from attnunet.phantom.anatomy import Tissue, annotated_pancreas, make_anatomy
from attnunet.phantom.appearance import acquire, metal_streaks, sample_appearance
from attnunet.phantom.case import CAUDAL_MM, CRANIAL_MM, case_streams, scan_grid
from attnunet.phantom.hardness import best_interval_dice
from attnunet.utils.atomic import NEW_FILE_MODE

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The first cases of ``attnunet-synth seed=123`` (the issue's hardness check), generated once."""
    return [make_case(seed=123, index=i) for i in range(3)]


def coarse_anatomy(seed: int, z: tuple[float, float] = (-70, 70)) -> object:
    """An anatomy on a 2.5 mm grid: same shapes and relations as a full case, quicker to draw
    (the core field of view, z -70..70 mm, laid out on its own)."""
    axes = (np.arange(-170, 170, 2.5), np.arange(-130, 130, 2.5), np.arange(z[0], z[1], 2.5))
    core_z = np.arange(-70, 70, 2.5)
    return make_anatomy(axes, np.random.default_rng(seed), np.random.default_rng(seed + 1000), core_z)


# The longest field of view a case can have (scan_grid: cranial and caudal ends, +-10 mm shift).
FULL_Z = (-CAUDAL_MM[1] - 10, CRANIAL_MM[1] + 10)


@pytest.fixture(scope="module")
def whole_trunks() -> list[object]:
    """Coarse anatomies over the longest field of view: heart and lung bases down to the pelvis."""
    return [coarse_anatomy(seed, FULL_Z) for seed in range(3)]


@pytest.fixture(scope="module")
def pelvic_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first case of seed 0 whose scan reaches at least 240 mm below the pancreas level."""
    for index in range(100):
        axes = scan_grid(*case_streams(0, index))[0]
        if axes[2][0] <= -240:
            return make_case(seed=0, index=index)
    raise AssertionError("no case of seed 0 reaches the pelvis")


def world_z(affine: np.ndarray, n: int) -> np.ndarray:
    return affine[2, 3] + affine[2, 2] * np.arange(n)


def test_same_seed_same_case_other_seed_other_case() -> None:
    a_img, a_lab, a_aff, a_tis = make_case(seed=1, index=0)
    b_img, b_lab, b_aff, b_tis = make_case(seed=1, index=0)
    c_img, c_lab, _, _ = make_case(seed=2, index=0)
    np.testing.assert_array_equal(a_tis, b_tis)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    np.testing.assert_array_equal(a_aff, b_aff)
    assert a_img.shape != c_img.shape or not np.array_equal(a_img, c_img)


def test_case_is_abdominal_ct_in_hounsfield_units(cases) -> None:
    for image, label, affine, _ in cases:
        assert image.dtype == np.int16 and label.dtype == np.uint8
        assert image.min() <= -900 and image.max() >= 400  # air/gas and bone
        assert set(np.unique(label)) == {0, 1}
        pancreas_ml = (label == 1).sum() * abs(np.linalg.det(affine[:3, :3])) / 1000
        assert 15 < pancreas_ml < 150  # adult pancreas volumes are roughly 40-120 mL, less when atrophic
        pieces, _ = ndimage.label(label == 1, np.ones((3, 3, 3)))
        assert np.bincount(pieces.ravel())[1:].max() > 0.97 * (label == 1).sum()  # one gland, cut-off bits at most
        spacing = np.abs(np.diag(affine)[:3])
        assert spacing[2] > spacing[0]  # thicker slices than in-plane pixels


@pytest.mark.slow  # full-size cases, every HU interval between quantiles searched
def test_pancreas_is_not_found_by_the_best_hu_interval(cases) -> None:
    """Issue #14: best interval between pancreas HU quantiles, with and without the largest connected
    component, scores Dice < 0.3 on every generated case (real CT: 0.01 / 0.02, below)."""
    for image, label, *_ in cases:
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
    for image, label, affine, _ in cases:
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


def test_label_outlines_the_parenchyma_not_the_fat_beside_it() -> None:
    """A gland (1 mm grid) with a 2 mm fat cleft inside, a fat lobule on its edge and a lesion: the
    cleft is labelled, the edge lobule (as dark as the fat around it) and the lesion are not."""
    tissue = np.full((40, 40, 40), Tissue.VISCERAL_FAT, dtype=np.uint8)
    tissue[10:30, 10:30, 10:30] = Tissue.PANCREAS
    tissue[19:21, 12:24, 16:28] = Tissue.PANCREAS_FAT  # cleft between two lobules
    tissue[10:30, 26:30, 10:14] = Tissue.PANCREAS_FAT  # fatty lobule on the outline
    tissue[22:26, 14:18, 20:24] = Tissue.LESION
    label = annotated_pancreas(tissue, np.ones(3))
    assert label[19:21, 12:24, 16:28].all()
    assert not label[10:30, 27:30, 10:13].any()
    assert not label[22:26, 14:18, 20:24].any()
    assert label[tissue == Tissue.PANCREAS].all()
    assert not label[tissue == Tissue.VISCERAL_FAT].any()
    # A gland cut by the grid's edge, on an anisotropic grid, keeps every parenchyma voxel.
    cut = np.full((30, 30, 12), Tissue.VISCERAL_FAT, dtype=np.uint8)
    cut[:12, 5:25, 2:10] = Tissue.PANCREAS
    assert annotated_pancreas(cut, np.array([1.5, 1.5, 3.0]))[cut == Tissue.PANCREAS].all()


def test_reorient_keeps_world_coordinates(cases) -> None:
    image, label, affine, _ = cases[0]
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


def test_cases_written_side_by_side_are_the_serial_ones(tmp_path: Path) -> None:
    serial = write_dataset(tmp_path / "serial", num_cases=2, seed=3, workers=1).parent
    parallel = write_dataset(tmp_path / "parallel", num_cases=2, seed=3, workers=2).parent
    assert (serial / "dataset.json").read_text() == (parallel / "dataset.json").read_text()
    files = sorted(p.relative_to(serial) for p in serial.rglob("*.nii.gz"))
    assert len(files) == 6  # image, label and tissue map per case
    for name in files:
        a, b = nib.load(serial / name), nib.load(parallel / name)
        np.testing.assert_array_equal(a.affine, b.affine)
        np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))


def test_a_failing_case_leaves_no_dataset_behind(tmp_path: Path, monkeypatch) -> None:
    def broken(seed: int, index: int, lesions: bool = False, phase: str | None = None):
        raise RuntimeError(f"case {index} failed")

    monkeypatch.setattr(writer, "make_case", broken)  # the worker processes are forked with it
    with pytest.raises(RuntimeError, match="failed"):
        write_dataset(tmp_path / "ds", num_cases=2, workers=2)
    assert list(tmp_path.iterdir()) == []


def test_field_of_view_runs_from_the_lung_bases_to_the_pelvis() -> None:
    """Real abdominal CT: upper-abdomen-only scans, most to the lower abdomen, some to the pelvis."""
    ends = []
    for seed in range(3):
        for index in range(20):
            axes, _, _, _, core_z = scan_grid(*case_streams(seed, index))
            ends.append((axes[2][0], axes[2][-1]))
            k = int(np.argmin(np.abs(axes[2] - core_z[0])))
            np.testing.assert_allclose(axes[2][k : k + len(core_z)], core_z)  # the scan holds the core grid
    low, high = np.array(ends).T
    assert (low >= FULL_Z[0]).all() and (low <= -CAUDAL_MM[0] + 10).all()
    assert (high >= CRANIAL_MM[0] - 15).all() and (high <= FULL_Z[1]).all()  # whole slices: up to 5 mm less
    assert (low <= -200).mean() > 0.2 and (low >= -110).mean() > 0.1  # pelvis / pancreas protocol
    assert (high >= 110).mean() > 0.2  # up to the heart


def test_rendered_cases_cover_the_pancreas_and_far_beyond(cases, pelvic_case) -> None:
    for image, label, affine, _ in cases:
        z = world_z(affine, image.shape[2])
        centroid = z[np.argwhere(label == 1)[:, 2]].mean()
        assert z[0] < centroid - 40 and z[-1] > centroid + 40
    image, label, affine, _ = pelvic_case
    z = world_z(affine, image.shape[2])
    assert z[0] <= z[np.argwhere(label == 1)[:, 2]].mean() - 200


def test_spine_lungs_and_pelvis_over_the_whole_field_of_view(whole_trunks) -> None:
    """Bone in every axial slice, and the spine (then sacrum and coccyx) in every one from the top
    down to the coccyx's tip deep in the pelvis (below it only hips and femora); lungs in every slice
    of the top; the iliac bones and femoral heads beside the midline, and the urinary bladder low down
    in the midline just behind the anterior abdominal wall."""
    x = np.arange(-170, 170, 2.5)[:, None, None]
    y = np.arange(-130, 130, 2.5)[None, :, None]
    z = np.arange(*FULL_Z, 2.5)
    for anatomy in whole_trunks:
        tissue = anatomy.tissue
        bone = np.isin(tissue, (Tissue.BONE_CORTEX, Tissue.BONE_MARROW))
        assert bone.any(axis=(0, 1)).all()
        spine = (bone & (np.abs(x) < 30) & (y < 0)).any(axis=(0, 1))
        tip = int(np.argmax(spine))
        assert spine[tip:].all() and z[tip] < -150  # sacrum and coccyx down into the pelvis
        assert (tissue[..., z > 120] == Tissue.LUNG).any(axis=(0, 1)).all()
        pelvis = z < -190
        assert (bone[..., pelvis] & (np.abs(x) > 50)).any(axis=(0, 1)).all()
        fluid, _ = ndimage.label(tissue[..., pelvis] == Tissue.BOWEL_FLUID)
        skin = np.nonzero((tissue[np.abs(x[:, 0, 0]) < 10][..., pelvis] != Tissue.AIR).any(axis=(0, 2)))[0].max()
        bladder_ml = 0.0
        for label, piece in enumerate(ndimage.find_objects(fluid), 1):
            blob = fluid[piece] == label
            xc = x[piece[0], 0, 0][np.nonzero(blob)[0]].mean()
            front = y[0, piece[1], 0][np.nonzero(blob)[1]].max()
            if abs(xc) < 35 and y[0, skin, 0] - front < 70:  # midline, behind the wall (fat, muscle)
                bladder_ml = max(bladder_ml, blob.sum() * 2.5**3 / 1000)
        assert bladder_ml > 30


def test_body_is_closed_in_every_slice(whole_trunks, pelvic_case) -> None:
    """The body is one piece per axial slice and has no air inside (lung and gas are tissues)."""
    for anatomy in whole_trunks:
        body = anatomy.tissue != Tissue.AIR
        for k in range(body.shape[2]):
            pieces, _ = ndimage.label(body[..., k], np.ones((3, 3)))
            assert np.bincount(pieces.ravel())[1:].max() > 0.999 * body[..., k].sum()  # warp: a stray pixel
            inside = ndimage.binary_erosion(ndimage.binary_fill_holes(body[..., k]), iterations=2)
            assert body[..., k][inside].all()  # no air deeper than 5 mm (the warp may nick the skin)
    image = pelvic_case[0]
    for k in range(image.shape[2]):
        body = ndimage.binary_fill_holes(image[..., k] > -500)
        pieces, _ = ndimage.label(body)
        assert np.bincount(pieces.ravel())[1:].max() > 0.999 * body.sum()


@pytest.mark.parametrize("seed, index", [(0, 0), (0, 167), (0, 213), (1, 4)])
def test_longer_field_of_view_keeps_the_core_draws(seed: int, index: int) -> None:
    """The pancreas neighbourhood comes from the core stream alone: on the whole scan grid
    (``scan_grid``) a case draws the same from it as on the core grid only, so the field of view never
    changes the gland or the appearance drawn after it. (0, 167) and (0, 213): the warp field's size
    differs between the two z axes. Not so where the core grid clips the gland (e.g. (0, 141): its
    lobules are drawn over a taller box)."""
    drawn = []
    for whole_scan in (False, True):
        rng, outer = case_streams(seed, index)
        grid = scan_grid(rng, outer)
        axes = grid.axes if whole_scan else (*grid.axes[:2], grid.core_z)
        assert len(axes[2]) > len(grid.core_z) or not whole_scan
        anatomy = make_anatomy(axes, rng, outer, grid.core_z)
        drawn.append((anatomy.centerline, rng.bit_generator.state, sample_appearance(rng)["mean"]))
    np.testing.assert_array_equal(drawn[0][0], drawn[1][0])
    assert drawn[0][1] == drawn[1][1]
    np.testing.assert_array_equal(drawn[0][2], drawn[1][2])


def test_metal_streaks_darken_the_band_between_two_implants() -> None:
    """Two metal rods in one slice: the scanner model darkens the band between them (the rays that
    cross both), streaks fade away from the metal, slices without metal are untouched, and the
    strongest streaks reach the case's strength."""
    metal = np.zeros((120, 100, 3), np.float32)
    yy, xx = np.meshgrid(np.arange(100), np.arange(120))
    for cx in (40, 80):
        metal[..., 1][(xx - cx) ** 2 + (yy - 50) ** 2 <= 9] = 1.0
    streaks = metal_streaks(metal, (1.5, 1.5), np.random.default_rng(0), strength_hu=400.0)
    assert streaks.dtype == np.float32 and streaks.shape == metal.shape
    assert not streaks[..., 0].any() and not streaks[..., 2].any()
    band = streaks[50:71, 49:52, 1].mean()  # between the rods, on the line joining them
    beside = streaks[50:71, 70:73, 1].mean()  # 30 mm off that line
    assert band < -50 and band < beside - 50
    assert np.percentile(np.abs(streaks[..., 1]), 99.9) == pytest.approx(400.0, rel=0.05)
    near, far = np.abs(streaks[30:90, 30:70, 1]).mean(), np.abs(streaks[:, 90:, 1]).mean()
    assert far < near / 2


def test_acquire_renders_metal_dense_and_streaked() -> None:
    """Through the scanner: metal stays far above bone, its slices get streaks, others do not."""
    hu = np.full((80, 80, 12), 40.0, np.float32)
    hu[38:42, 38:42, 4:8] = 3000.0
    look = {"psf_mm": 0.8, "bias_hu": 0.0, "noise_hu": 0.0, "noise_grain_vox": 0.5, "streak_hu": 300.0}
    image = acquire(hu, (1.5, 1.5, 1.5), 2, np.random.default_rng(0), look).astype(float)
    assert image.max() > 2000
    assert np.abs(image[:, :, 2:4] - 40).std() > 10  # slices holding metal
    assert np.abs(image[:, :, [0, 5]] - 40).max() <= 1  # slices without it


def test_implants_are_metal_where_they_belong(monkeypatch) -> None:
    """Implants, all forced on: a hip prosthesis in the femoral head region, pedicle
    screws and rods in the lumbar spine, clips near the liver hilum, all in metal HU classes."""
    monkeypatch.setattr(implants, "HIP_PROSTHESIS_PROBABILITY", 1.0)
    monkeypatch.setattr(implants, "SPINAL_FIXATION_PROBABILITY", 1.0)
    monkeypatch.setattr(implants, "CLIPS_PROBABILITY", 1.0)
    axes = (np.arange(-170, 170, 2.5), np.arange(-130, 130, 2.5), np.arange(*FULL_Z, 2.5))
    anatomy = make_anatomy(
        axes,
        np.random.default_rng(5),
        np.random.default_rng(1005),
        np.arange(-70, 70, 2.5),
        findings=np.random.default_rng(0),
    )
    assert anatomy.implants == ["hip prosthesis", "spinal fixation", "surgical clips"]
    metal = anatomy.tissue == Tissue.METAL
    z = axes[2][np.nonzero(metal)[2]]
    assert (z < -180).sum() > 200  # the prosthesis at the hips (far below the pancreas)
    assert ((z > -170) & (z < -40)).sum() > 50  # the fixation in the lumbar spine
    assert ((z > -40) & (z < 60)).sum() > 3  # clips around the hilum
    assert not (anatomy.pancreas & metal).any()
    assert sample_appearance(np.random.default_rng(0), findings=np.random.default_rng(0))["mean"][Tissue.METAL] > 2000


def test_a_forced_phase_keeps_the_anatomy_and_changes_the_appearance(cases, tmp_path: Path) -> None:
    image, label, affine, tissue = cases[0]  # seed 123, case 0, phase drawn
    forced = make_case(seed=123, index=0, phase="portal_venous")
    np.testing.assert_array_equal(forced.label, label)
    np.testing.assert_array_equal(forced.tissue, tissue)
    np.testing.assert_array_equal(forced.affine, affine)
    assert not np.array_equal(forced.image, image)
    liver = forced.tissue == Tissue.LIVER
    assert 80 < np.median(forced.image[liver]) < 160  # an enhanced liver (portal venous: 95-130 HU)
    with pytest.raises(ValueError, match="phase must be one of"):
        write_dataset(tmp_path / "ds", num_cases=1, phase="venous")
