"""DICOM-SEG output: a label volume on a series' grid -> a Segmentation that references that series."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from attnunet.errors import AttnUNetError
from attnunet.io.dicom import read_series_geometry
from attnunet.io.dicom_seg import write_dicom_seg
from attnunet.io.dicom_writer import write_series

DATA = Path(__file__).parent / "data"
SLICES = slice(84, 96)  # twelve slices through the pancreas of the real CT
NAMES = {0: "background", 1: "pancreas", 2: "tumour", 3: "spleen"}
FRAME_OF_REFERENCE = generate_uid()


def add_scanner_attributes(folder: Path) -> None:
    """What a scanner writes and ``write_series`` leaves out: a frame of reference and the patient."""
    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
        ds.PatientName, ds.PatientSex, ds.StudyID = "Test^Patient", "O", "1"
        ds.save_as(f)


@pytest.fixture(scope="module")
def hd() -> ModuleType:
    """highdicom, to read the written objects back (in the test extra; the dicom extra for users)."""
    return pytest.importorskip("highdicom", reason="DICOM-SEG needs the dicom extra: pip install attnunet[dicom]")


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A CT series from the real scan (cropped to :data:`SLICES`) and labels on its grid: the real
    pancreas mask as label 1, a small block of label 2 inside it, nothing of label 3."""
    ct = nib.load(DATA / "abdomen_ct.nii.gz").slicer[:, :, SLICES]
    mask = nib.load(DATA / "abdomen_pancreas.nii.gz").slicer[:, :, SLICES]
    folder = write_series(ct, tmp_path_factory.mktemp("dicom") / "series")
    add_scanner_attributes(folder)
    # write_series stores the RAS-canonical volume with axis 0 along a row, axis 1 down the columns,
    # axis 2 along the slices: the grid read_series_geometry gives, as the Predictor's labels are.
    labels = np.asarray(nib.as_closest_canonical(mask).dataobj).astype(np.uint8)
    assert labels.shape == read_series_geometry(folder).shape
    pancreas = np.argwhere(labels == 1)
    i, j, k = pancreas[len(pancreas) // 2]
    labels[i - 1 : i + 2, j - 1 : j + 2, max(k - 1, 0) : k + 2] = 2
    return folder, labels


def frames_by_source(seg: Any) -> dict[tuple[str, int], np.ndarray]:
    """(referenced source SOPInstanceUID, segment number) -> that frame's mask (rows x columns)."""
    pixels = seg.pixel_array if seg.NumberOfFrames > 1 else seg.pixel_array[None]
    out = {}
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence):
        (source,) = item.DerivationImageSequence[0].SourceImageSequence
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out[(source.ReferencedSOPInstanceUID, number)] = frame
    return out


def test_segmentation_references_each_source_slice_and_matches_the_labels(
    hd: ModuleType, series: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    folder, labels = series
    path = write_dicom_seg(labels, folder, NAMES, tmp_path / "seg.dcm")
    assert path == tmp_path / "seg.dcm" and not list(tmp_path.glob(".*"))  # no temporary file left
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(path))
    geometry = read_series_geometry(folder)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in geometry.files]

    assert seg.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["pancreas", "tumour", "spleen"]
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2, 3]  # segment number = label value
    codes = [
        (s.SegmentedPropertyCategoryCodeSequence[0], s.SegmentedPropertyTypeCodeSequence[0])
        for s in seg.SegmentSequence
    ]
    assert [(c.CodeValue, t.CodeValue) for c, t in codes] == [
        ("91723000", "15776009"),  # anatomical structure / pancreas
        ("49755003", "108369006"),  # morphologically abnormal structure / neoplasm
        ("85756007", "85756007"),  # tissue / tissue
    ]
    assert {t.CodingSchemeDesignator for _, t in codes} == {"SCT"}
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "attnunet" and seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID == FRAME_OF_REFERENCE
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.PatientID == sources[0].PatientID and str(seg.PatientName) == "Test^Patient"
    assert seg.SeriesInstanceUID != sources[0].SeriesInstanceUID
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {s.SOPInstanceUID for s in sources}

    frames = frames_by_source(seg)
    expected = {
        (sources[k].SOPInstanceUID, value): np.equal(labels[:, :, k].T, value)
        for k in range(labels.shape[2])
        for value in (1, 2, 3)
        if (labels[:, :, k] == value).any()
    }
    assert set(frames) == set(expected)  # empty frames are left out; nothing of spleen
    assert {number for _, number in frames} == {1, 2}
    for key, mask in expected.items():
        np.testing.assert_array_equal(frames[key].astype(bool), mask, err_msg=str(key))
    # The frames' positions are those of their source slices.
    position = {s.SOPInstanceUID: np.asarray(s.ImagePositionPatient, float) for s in sources}
    for item in seg.PerFrameFunctionalGroupsSequence:
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        got = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        np.testing.assert_allclose(got, position[uid], atol=1e-3)


def test_an_empty_prediction_still_gives_a_valid_segmentation(
    hd: ModuleType, series: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    folder, labels = series
    path = write_dicom_seg(np.zeros_like(labels), folder, {0: "background", 1: "pancreas"}, tmp_path / "seg.dcm")
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(path))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["pancreas"]
    assert seg.NumberOfFrames == labels.shape[2] and not seg.pixel_array.any()


def test_bad_inputs_are_one_line_errors(hd: ModuleType, series: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    folder, labels = series
    cases = [
        (labels[:, :, :-1], NAMES, "not on the series' grid"),
        (labels, {0: "background", 1: "pancreas"}, "label values [2] are not in the label map"),
        (labels, {0: "background", 2: "tumour"}, "must number its labels 0..K-1"),
    ]
    for volume, names, expected in cases:
        with pytest.raises(AttnUNetError) as e:
            write_dicom_seg(volume, folder, names, tmp_path / "seg.dcm")
        assert expected in str(e.value) and "\n" not in str(e.value)
    assert not list(tmp_path.iterdir())  # nothing written

    bare = write_series(nib.load(DATA / "abdomen_ct.nii.gz").slicer[:, :, 90:93], tmp_path / "bare")
    for file in bare.iterdir():  # a series from a scanner that left the frame of reference out
        ds = pydicom.dcmread(file)
        del ds.FrameOfReferenceUID
        ds.save_as(file)
    with pytest.raises(AttnUNetError) as e:
        write_dicom_seg(np.zeros(read_series_geometry(bare).shape, np.uint8), bare, NAMES, tmp_path / "seg.dcm")
    assert "no FrameOfReferenceUID" in str(e.value)


def test_without_highdicom_the_error_names_the_extra_to_install(
    series: tuple[Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "highdicom", None)  # what an install without the dicom extra sees
    folder, labels = series
    with pytest.raises(
        AttnUNetError, match=r"^DICOM-SEG output needs the optional package: pip install 'attnunet\[dicom\]'$"
    ):
        write_dicom_seg(labels, folder, NAMES, tmp_path / "seg.dcm")
    assert not list(tmp_path.iterdir())
