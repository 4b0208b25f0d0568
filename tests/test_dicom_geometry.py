"""DICOM series geometry: slices ordered by position (not InstanceNumber), irregular grids refused,
DICOMDIR indexes ignored, compressed slices decoded, valid DS strings written.

Every series is written from a small NIfTI with :func:`write_series` and compared with that NIfTI in
world coordinates after the shared loading steps (reoriented to RAS)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai import transforms as mt
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from attnunet.data.transforms import load_images, loading
from attnunet.errors import AttnUNetError, user_error
from attnunet.io.dicom import DICOMDIR_SOP_CLASS, check_dicom_series, dicom_series_dirs
from attnunet.io.dicom_writer import write_series
from tests.helpers import write_header_only_dicom

SHAPE = (7, 9, 6)  # columns, rows, slices: all different so a swapped axis shows
SPACING = (0.8593750000000001, 0.7, 2.5)
ORIGIN = (-101.123456789, 20.5, 33.3333333333)
FLIP = np.diag([-1.0, -1.0, 1.0])  # LPS <-> RAS


def _rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    a = np.asarray(axis) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.radians(degrees)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


# Patient-space (LPS) rotations applied to an axial head-first series.
ORIENTATIONS = {
    "axial": np.eye(3),
    "feet_first": np.diag([-1.0, 1.0, -1.0]),
    "coronal": _rotation((1, 0, 0), 90),
    "oblique": _rotation((1, 2, 3), 23.7),
}


def _source(tmp_path: Path, affine: np.ndarray | None = None, shape: tuple[int, int, int] = SHAPE) -> Path:
    """A NIfTI CT of ``shape`` with random HU, stored in RAS."""
    if affine is None:
        affine = np.diag([*SPACING, 1.0])
        affine[:3, 3] = ORIGIN
    data = np.random.default_rng(0).integers(-1000, 1500, shape).astype(np.int16)
    path = tmp_path / f"source_{len(list(tmp_path.glob('source_*')))}.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _edit(folder: Path, change: Callable[[int, pydicom.Dataset], None]) -> None:
    """Rewrite every slice file (in name order, index ``k``) after ``change(k, dataset)``."""
    for k, f in enumerate(sorted(folder.glob("*.dcm"))):
        ds = pydicom.dcmread(f)
        change(k, ds)
        ds.save_as(f)


def _ds(values: np.ndarray) -> list[str]:
    return [pydicom.valuerep.format_number_as_ds(float(v)) for v in values]


def _rotate(folder: Path, rotation: np.ndarray) -> None:
    """Move the whole series by ``rotation`` (LPS, about the origin), as another acquisition would lie."""

    def change(_: int, ds: pydicom.Dataset) -> None:
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        ds.ImagePositionPatient = _ds(rotation @ np.asarray(ds.ImagePositionPatient, dtype=float))
        ds.ImageOrientationPatient = _ds(np.concatenate([rotation @ iop[:3], rotation @ iop[3:]]))

    _edit(folder, change)


def _load(path: Path) -> mt.MapTransform:
    return mt.Compose(loading(["image"], "RAS"))({"image": str(path)})["image"]


def _assert_same_world_grid(series: Path, nifti: Path) -> None:
    got, want = _load(series), _load(nifti)
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_allclose(got.affine.numpy(), want.affine.numpy(), atol=1e-3)
    assert np.array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_slices_are_ordered_by_position_not_instance_number(tmp_path: Path, orientation: str) -> None:
    rotation = ORIENTATIONS[orientation]
    source = _source(tmp_path)
    series = write_series(source, tmp_path / "series")
    _rotate(series, rotation)
    numbers = np.random.default_rng(1).permutation(SHAPE[2]) + 1

    def shuffle(k: int, ds: pydicom.Dataset) -> None:
        ds.InstanceNumber = int(numbers[k])
        if k == 2:
            del ds.InstanceNumber

    _edit(series, shuffle)
    moved = np.eye(4)
    moved[:3, :3] = FLIP @ rotation @ FLIP
    img = nib.load(source)
    reference = tmp_path / "reference.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), moved @ img.affine), reference)
    _assert_same_world_grid(series, reference)
    check_dicom_series(series)


def _delete(keyword: str) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        _edit(folder, lambda k, ds: delattr(ds, keyword) if k == 1 else None)

    return change


def _duplicate(folder: Path) -> None:
    shutil.copy(folder / "slice0002.dcm", folder / "slice0002_copy.dcm")


def _remove_slice(folder: Path) -> None:
    (folder / "slice0003.dcm").unlink()


def _move_slice(folder: Path) -> None:
    def change(k: int, ds: pydicom.Dataset) -> None:
        if k == 3:
            ds.ImagePositionPatient = _ds(np.asarray(ds.ImagePositionPatient, dtype=float) + [0, 0, 0.6])

    _edit(folder, change)


def _tilt(folder: Path) -> None:  # gantry tilted by 15 degrees: each slice shifted along y
    def change(k: int, ds: pydicom.Dataset) -> None:
        shift = k * SPACING[2] * np.tan(np.radians(15))
        ds.ImagePositionPatient = _ds(np.asarray(ds.ImagePositionPatient, dtype=float) + [0, shift, 0])

    _edit(folder, change)


def _turn_one_slice(folder: Path) -> None:
    def change(k: int, ds: pydicom.Dataset) -> None:
        if k == 4:
            axial = np.array([[-1.0, 0.0], [0.0, -1.0], [0.0, 0.0]])  # row and column directions as written
            ds.ImageOrientationPatient = _ds((_rotation((0, 0, 1), 5) @ axial).T.ravel())

    _edit(folder, change)


def _keep_one_slice(folder: Path) -> None:
    for f in sorted(folder.glob("*.dcm"))[1:]:
        f.unlink()


BROKEN = {
    "duplicate": (_duplicate, r"series: slices slice0002.dcm and slice0002_copy.dcm lie at the same position"),
    "missing_slice": (_remove_slice, r"series: uneven slice spacing: gaps of 2.5, 5 mm between 5 slices"),
    "uneven": (_move_slice, r"series: uneven slice spacing: gaps of 1.9, 2.5, 3.1 mm"),
    "tilt": (_tilt, r"series: slice positions move 3.35 mm sideways .*gantry tilt of 15.0 degrees"),
    "turned_slice": (_turn_one_slice, r"slice0004.dcm: ImageOrientationPatient \[-0.9962, -0.08716, 0, .* differs"),
    "no_orientation": (_delete("ImageOrientationPatient"), r"slice0001.dcm: no ImageOrientationPatient"),
    "no_position": (_delete("ImagePositionPatient"), r"slice0001.dcm: no ImagePositionPatient"),
    "no_pixel_spacing": (_delete("PixelSpacing"), r"slice0001.dcm: no PixelSpacing"),
    "one_slice": (_keep_one_slice, r"series: series has 1 slice; a 3D volume needs at least 2"),
}


@pytest.mark.parametrize("broken", BROKEN)
def test_irregular_series_are_refused_naming_the_problem(tmp_path: Path, broken: str) -> None:
    damage, message = BROKEN[broken]
    series = write_series(_source(tmp_path), tmp_path / "series")
    damage(series)
    with pytest.raises(AttnUNetError, match=message):
        check_dicom_series(series)
    with pytest.raises(AttnUNetError, match=message):  # the reader refuses too, not only the header check
        load_images(["image"])({"image": str(series)})["image"]
    with pytest.raises(RuntimeError) as caught:  # MONAI's Compose wraps our error in a RuntimeError
        _load(series)
    assert user_error(caught.value) is not None and "\n" not in str(user_error(caught.value))


def test_dicomdir_indexes_are_not_series(tmp_path: Path) -> None:
    export = tmp_path / "export"
    series = write_series(_source(tmp_path), export / "PATIENT" / "SERIES")
    write_header_only_dicom(export / "DICOMDIR", DICOMDIR_SOP_CLASS, FileSetID="EXPORT", DirectoryRecordSequence=[])
    write_header_only_dicom(
        series / "INDEX", DICOMDIR_SOP_CLASS, FileSetID="EXPORT", DirectoryRecordSequence=[]
    )  # recognised by its SOP class, whatever its name
    assert dicom_series_dirs(export) == [series]
    check_dicom_series(series)
    assert tuple(_load(series).shape) == (1, *SHAPE)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless], ids=["jpeg2000_lossless", "rle"])
def test_compressed_series_decode_to_the_same_voxels(tmp_path: Path, syntax: str) -> None:
    source = _source(tmp_path, shape=(40, 36, 3))  # OpenJPEG's default 6 resolutions need 32+ pixels a side
    series = write_series(source, tmp_path / "series")
    _edit(series, lambda _, ds: ds.compress(syntax))
    assert all(pydicom.dcmread(f).file_meta.TransferSyntaxUID == syntax for f in series.iterdir())
    _assert_same_world_grid(series, source)


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, JPEG2000])
def test_decoders_for_pacs_transfer_syntaxes_are_installed(syntax: str) -> None:
    assert get_decoder(syntax).is_available, f"no decoder for {syntax.name}: install the pylibjpeg plugins"


def test_written_decimal_strings_fit_sixteen_characters(tmp_path: Path) -> None:
    affine = np.eye(4)
    affine[:3, :3] = _rotation((3, -1, 2), 11.1) @ np.diag(SPACING)
    affine[:3, 3] = ORIGIN
    series = write_series(_source(tmp_path, affine), tmp_path / "series")
    checked = 0
    for f in series.iterdir():
        for element in pydicom.dcmread(f).iterall():
            if element.VR == "DS":
                values = element.value if element.VM > 1 else [element.value]
                assert all(len(str(v)) <= 16 for v in values), (f.name, element.keyword, values)
                checked += len(values)
    assert checked == SHAPE[2] * (3 + 6 + 2 + 1 + 2)  # position, orientation, pixel spacing, thickness, rescale
