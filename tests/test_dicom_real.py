"""DICOM as scanners and other toolkits write it: series built from the real files pydicom ships
(``pydicom.data``), read through attnunet's reader and compared with pydicom's own modality LUT.

* ``CT_small.dcm``: a real GE CT slice (signed pixels, RescaleIntercept -1024); variants with
  unsigned pixels and intercept -1024, and with RescaleSlope 2;
* ``693_J2KI.dcm``: a real 512 x 512 CT slice, lossy JPEG 2000;
* ``MR_small*.dcm``: one slice written uncompressed and by other toolkits as JPEG 2000 lossless,
  JPEG-LS lossless and RLE, which must decode to the same voxels;
* refusals: ``rtdose.dcm`` (multi-frame without per-frame positions), ``SC_rgb_jpeg_dcmtk.dcm``
  (colour), and in a study folder the non-CT objects are skipped, each with its notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.uid import generate_uid

from attnunet.data.transforms import load_images
from attnunet.errors import AttnUNetError
from attnunet.inference.io import find_inputs
from attnunet.io.dicom import check_dicom_series, read_series_geometry, read_series_voxels

SLICES = 8
SPACING_MM = 5.0


def _real(name: str) -> Path:
    """A file of pydicom's test data that ships with the package (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not among pydicom's bundled test files"
    return Path(path)


def _series_from(
    name: str, folder: Path, change: Callable[[int, pydicom.Dataset], None] | None = None
) -> list[pydicom.Dataset]:
    """:data:`SLICES` copies of the real file ``name`` stacked :data:`SPACING_MM` apart along its slice
    normal as one series, the file names in the reverse order of the positions; returns the written
    datasets in position order."""
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    written = []
    for k in range(SLICES):
        ds = pydicom.dcmread(_real(name))
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        ds.ImagePositionPatient = [
            f"{v:.4f}" for v in np.asarray(ds.ImagePositionPatient, float) + k * SPACING_MM * normal
        ]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, k + 1
        if change is not None:
            change(k, ds)
        ds.save_as(folder / f"IM{SLICES - k:04d}.dcm")
        written.append(ds)
    return written


def _hu(datasets: list[pydicom.Dataset]) -> np.ndarray:
    """pydicom's modality LUT per slice: ``(Columns, Rows, slices)`` as attnunet's reader lays them out."""
    return np.stack([apply_modality_lut(ds.pixel_array, ds).T for ds in datasets], axis=-1)


def _read(folder: Path) -> np.ndarray:
    return load_images(["image"])({"image": str(folder)})["image"].numpy()


def _vary(k: int, ds: pydicom.Dataset) -> None:
    """Each slice its own values, so that a wrong slice order shows."""
    ds.PixelData = (ds.pixel_array + 7 * k).astype(ds.pixel_array.dtype).tobytes()


def test_ct_small_reads_as_pydicoms_hounsfield_units(tmp_path: Path) -> None:
    written = _series_from("CT_small.dcm", tmp_path / "series", _vary)
    assert written[0].PixelRepresentation == 1 and float(written[0].RescaleIntercept) == -1024
    volume = _read(tmp_path / "series")
    np.testing.assert_array_equal(volume, _hu(written))
    assert -1024 <= volume.min() < 0 < volume.max()  # air and soft tissue in HU, not stored values


def _unsigned(k: int, ds: pydicom.Dataset) -> None:
    """Stored as many scanners do: unsigned values, HU = value - 1024."""
    hu = apply_modality_lut(ds.pixel_array, ds) + 7 * k
    ds.PixelRepresentation, ds.RescaleIntercept, ds.RescaleSlope = 0, -1024, 1
    ds.PixelData = (hu + 1024).astype(np.uint16).tobytes()


def _slope_two(k: int, ds: pydicom.Dataset) -> None:
    """HU = 2 * value - 1024: half the values stored, every HU kept to 2 HU."""
    hu = apply_modality_lut(ds.pixel_array, ds) + 7 * k
    ds.PixelRepresentation, ds.RescaleIntercept, ds.RescaleSlope = 0, -1024, 2
    ds.PixelData = ((hu + 1024) // 2).astype(np.uint16).tobytes()


def test_unsigned_pixels_with_intercept_and_a_slope_give_the_same_hounsfield_units(tmp_path: Path) -> None:
    _series_from("CT_small.dcm", tmp_path / "signed", _vary)
    signed = _read(tmp_path / "signed")
    unsigned = _series_from("CT_small.dcm", tmp_path / "unsigned", _unsigned)
    assert unsigned[0].pixel_array.dtype == np.uint16
    np.testing.assert_array_equal(_read(tmp_path / "unsigned"), signed)
    sloped = _series_from("CT_small.dcm", tmp_path / "sloped", _slope_two)
    volume = _read(tmp_path / "sloped")
    np.testing.assert_array_equal(volume, _hu(sloped))
    assert np.abs(volume - signed).max() <= 1  # within the half a step of 2 HU the slope stores


def test_real_lossy_jpeg2000_ct_decodes(tmp_path: Path) -> None:
    if not get_decoder(pydicom.dcmread(_real("693_J2KI.dcm")).file_meta.TransferSyntaxUID).is_available:
        pytest.skip("no JPEG 2000 decoder installed (pylibjpeg-openjpeg)")
    written = _series_from("693_J2KI.dcm", tmp_path / "series")
    geometry = read_series_geometry(tmp_path / "series")
    assert geometry.shape == (512, 512, SLICES)
    volume = read_series_voxels(geometry)
    np.testing.assert_array_equal(volume, _hu(written))
    assert volume.min() < -900 and volume.max() > 500  # air and bone


@pytest.mark.parametrize("variant", ["MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm"])
def test_losslessly_compressed_files_of_other_toolkits_decode_to_the_same_voxels(tmp_path: Path, variant: str) -> None:
    syntax = pydicom.dcmread(_real(variant)).file_meta.TransferSyntaxUID
    if not get_decoder(syntax).is_available:
        pytest.skip(f"no decoder installed for {syntax.name}")
    _series_from("MR_small.dcm", tmp_path / "plain")
    _series_from(variant, tmp_path / "compressed")
    plain, compressed = _read(tmp_path / "plain"), _read(tmp_path / "compressed")
    assert plain.std() > 0
    np.testing.assert_array_equal(compressed, plain)


def _only(name: str, folder: Path) -> Path:
    folder.mkdir()
    (folder / name).write_bytes(_real(name).read_bytes())
    return folder


def test_multi_frame_without_frame_positions_is_refused(tmp_path: Path) -> None:
    folder = _only("rtdose.dcm", tmp_path / "dose")
    message = r"rtdose.dcm: multi-frame DICOM \(15 frames\) without per-frame functional groups"
    with pytest.raises(AttnUNetError, match=message):
        check_dicom_series(folder)
    with pytest.raises(AttnUNetError, match=message):  # the reader refuses too, not only the header check
        _read(folder)


def test_colour_images_are_refused(tmp_path: Path) -> None:
    folder = _only("SC_rgb_jpeg_dcmtk.dcm", tmp_path / "rgb")
    message = r"SC_rgb_jpeg_dcmtk.dcm: SamplesPerPixel is 3; a CT slice has one grey value per pixel"
    with pytest.raises(AttnUNetError, match=message):
        check_dicom_series(folder)
    with pytest.raises(AttnUNetError, match=message):
        _read(folder)


def test_a_study_skips_the_real_objects_that_are_no_ct(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    study = tmp_path / "study"
    ct = _series_from("CT_small.dcm", study, _vary)
    for name in ("rtdose.dcm", "SC_rgb_jpeg_dcmtk.dcm", "liver_1frame.dcm", "MR_small.dcm", "JPEG2000.dcm"):
        (study / name).write_bytes(_real(name).read_bytes())
    with caplog.at_level(logging.WARNING, logger="attnunet"):
        ((name, source),) = find_inputs(study)
    assert str(pydicom.dcmread(source, stop_before_pixels=True).SeriesInstanceUID) == ct[0].SeriesInstanceUID
    assert name.startswith("study_s") and read_series_geometry(source).shape == (128, 128, SLICES)
    reasons = sorted(r.getMessage().rsplit(": ", 1)[-1] for r in caplog.records)
    assert reasons == [
        "a secondary capture (e.g. a dose report page), not a CT acquisition",
        "a secondary capture (e.g. a dose report page), not a CT acquisition",
        "modality MR, not CT",
        "modality RTDOSE, not CT",
        "modality SEG, not CT",
    ]
