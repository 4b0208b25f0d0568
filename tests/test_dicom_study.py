"""Whole-study DICOM folders (one case per series that can be segmented, the rest skipped with a
notice, ``series=`` to pick one), enhanced multi-frame CT, and DICOM-SEG referencing its series.

Series are written from crops of the real CT (``tests/data``) with ``write_series`` and then edited
into what scanners export beside them: a localizer, a dose report (secondary capture and SR), a
bolus-tracking monitoring series; the enhanced CT is highdicom's legacy conversion of classic slices."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai import transforms as mt
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from attnunet.data.transforms import loading
from attnunet.errors import AttnUNetError
from attnunet.inference.io import find_inputs
from attnunet.io.dicom import check_dicom_series, read_series_geometry
from attnunet.io.dicom_writer import write_series
from tests.helpers import CT, make_checkpoint, run_cli, write_header_only_dicom

XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
THICK = (slice(40, 56), slice(30, 44), slice(50, 62))  # 16 x 14 x 12 voxels of the real CT
THIN = (slice(36, 60), slice(28, 46), slice(44, 70))  # 24 x 18 x 26: another grid, same patient


def _crop(where: tuple[slice, ...]) -> nib.Nifti1Image:
    return nib.load(CT).slicer[where]


def _add_series(
    study: Path,
    image: nib.Nifti1Image,
    number: int,
    description: str,
    change: Callable[[int, pydicom.Dataset], None] | None = None,
) -> list[Path]:
    """Write ``image`` as series ``number`` into the flat ``study`` folder (files ``s<number>_<n>.dcm``,
    ``n`` counting the folder's files)."""
    staging = write_series(image, study.parent / "staging")
    files, start = [], len(list(study.iterdir()))
    for k, f in enumerate(sorted(staging.iterdir())):
        ds = pydicom.dcmread(f)
        ds.SeriesNumber, ds.SeriesDescription = number, description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        if change is not None:
            change(k, ds)
        files.append(study / f"s{number}_{start + k:04d}.dcm")
        ds.save_as(files[-1])
    shutil.rmtree(staging)
    return files


def _localizer(k: int, ds: pydicom.Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]


def _dose_page(k: int, ds: pydicom.Dataset) -> None:
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]


def _monitoring(k: int, ds: pydicom.Dataset) -> None:  # bolus tracking: one table position, again and again
    ds.ImagePositionPatient = [0, 0, 0]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One flat folder as a CD export holds it: a localizer (1), the thick (2) and thin (3) series,
    a monitoring series (4), a dose report page (998) and a dose SR (997)."""
    study = tmp_path_factory.mktemp("export") / "Study ä"
    study.mkdir()
    _add_series(study, _crop((slice(0, 16), slice(30, 31), slice(40, 60))), 1, "Topogram", _localizer)
    _add_series(study, _crop(THICK), 2, "Abdomen 3.0 Br40")
    _add_series(study, _crop(THIN), 3, "Abdomen/Venös 1,5 [B30f]")
    _add_series(study, _crop((slice(40, 56), slice(30, 44), slice(50, 56))), 4, "Bolus tracking", _monitoring)
    _add_series(study, _crop((slice(0, 16), slice(0, 14), slice(0, 1))), 998, "Dose Info", _dose_page)
    write_header_only_dicom(
        study / "dose_sr.dcm",
        XRAY_DOSE_SR,
        Modality="SR",
        SeriesInstanceUID=generate_uid(),
        SeriesNumber=997,
        SeriesDescription="Dose Report",
    )
    return study


def _load(source: Path) -> np.ndarray:
    return mt.Compose(loading(["image"], "RAS"))({"image": str(source)})["image"].numpy()[0]


def test_a_study_gives_one_case_per_segmentable_series(study: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="attnunet"):
        cases = find_inputs(study)
    assert [name for name, _ in cases] == ["Study_ä_s2_Abdomen_3.0_Br40", "Study_ä_s3_Abdomen_Venös_1_5_B30f"]
    skipped = [r.getMessage() for r in caplog.records]
    assert skipped == [
        f"skipped {study}: series 1 'Topogram': a localizer (scout)",
        f"skipped {study}: series 4 'Bolus tracking': 1 slice position(s), fewer than 8: no volume to segment",
        f"skipped {study}: series 997 'Dose Report': a structured report (e.g. a dose report), not an image",
        f"skipped {study}: series 998 'Dose Info': a secondary capture (e.g. a dose report page), not a CT acquisition",
    ]
    for (_, source), crop in zip(cases, (THICK, THIN)):  # each case reads its own series, nothing of the others
        np.testing.assert_array_equal(_load(source), np.asanyarray(nib.as_closest_canonical(_crop(crop)).dataobj))


def test_series_picks_one_by_number_or_uid(study: Path) -> None:
    (by_number,) = find_inputs(study, series=3)
    uid = str(pydicom.dcmread(by_number[1], stop_before_pixels=True).SeriesInstanceUID)
    assert find_inputs(study, series=uid) == [by_number]
    assert by_number[0] == "Study_ä_s3_Abdomen_Venös_1_5_B30f"
    with pytest.raises(AttnUNetError, match=r"no series with SeriesNumber or SeriesInstanceUID 7; found: 1 'Topogram'"):
        find_inputs(study, series=7)
    with pytest.raises(AttnUNetError, match=r"Study ä: series 1 'Topogram' cannot be segmented: a localizer"):
        find_inputs(study, series=1)


def test_a_file_of_a_study_stands_for_its_series(study: Path) -> None:
    files = sorted(study.glob("s2_*.dcm"))
    assert find_inputs(files[5]) == [("Study_ä_s2_Abdomen_3.0_Br40", files[0])]  # named by its series' first file
    geometry = read_series_geometry(files[5])
    assert geometry.shape == _crop(THICK).shape and set(geometry.files) == set(files)


def test_the_study_folder_itself_is_still_no_single_series(study: Path) -> None:
    with pytest.raises(AttnUNetError, match="folder mixes 6 DICOM series; attnunet-infer input= reads each as a case"):
        check_dicom_series(study)


def test_one_series_per_folder_keeps_the_folder_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    export = tmp_path / "export"
    for number, crop, change in ((1, THICK, _localizer), (2, THICK, None), (3, THIN, None)):
        folder = export / "PAT" / f"SE{number}"
        folder.mkdir(parents=True)
        _add_series(folder, _crop(crop), number, "same description", change)
    with caplog.at_level(logging.WARNING, logger="attnunet"):
        assert [name for name, _ in find_inputs(export)] == ["PAT_SE2", "PAT_SE3"]
    assert "series 1 'same description': a localizer" in caplog.text


def test_series_sharing_a_name_get_their_uids_last_digits(tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    first = _add_series(study, _crop(THICK), 2, "Abdomen")
    _add_series(study, _crop(THIN), 2, "Abdomen", lambda k, ds: setattr(ds, "SeriesInstanceUID", "1.2.3.4.99"))
    uid = str(pydicom.dcmread(first[0]).SeriesInstanceUID)
    names = sorted(name for name, _ in find_inputs(study))
    assert names == sorted([f"study_s2_Abdomen_{uid.rsplit('.', 1)[-1][-8:]}", "study_s2_Abdomen_99"])


def test_nothing_segmentable_is_one_clear_error(tmp_path: Path) -> None:
    study = tmp_path / "scouts"
    study.mkdir()
    _add_series(study, _crop(THICK), 1, "Topogram", _localizer)
    with pytest.raises(AttnUNetError, match=r"scouts: no DICOM series here can be segmented"):
        find_inputs(study)


# Enhanced (multi-frame) CT: highdicom's legacy conversion of classic slices, as scanners store them.


def _enhanced(tmp_path: Path, crop: tuple[slice, ...] = THICK) -> tuple[Path, Path]:
    """(classic series folder, the same slices as one Legacy Converted Enhanced CT file in its own folder)."""
    hd = pytest.importorskip("highdicom", reason="highdicom (attnunet[test]) converts classic slices to enhanced CT")
    classic = write_series(_crop(crop), tmp_path / "classic")
    slices = [pydicom.dcmread(f) for f in sorted(classic.iterdir())]
    for ds in slices:  # what a scanner writes and write_series leaves out
        for keyword in ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID"):
            setattr(ds, keyword, "")
        ds.ReferringPhysicianName, ds.AccessionNumber, ds.Manufacturer = "", "", ""
        ds.ImageType, ds.SeriesNumber = ["ORIGINAL", "PRIMARY", "AXIAL"], 5
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(slices, hd.UID(), 5, hd.UID(), 1)
    folder = tmp_path / "enhanced"
    folder.mkdir()
    enhanced.save_as(folder / "enhanced_ct.dcm")
    return classic, folder / "enhanced_ct.dcm"


def test_enhanced_ct_reads_on_the_grid_of_its_classic_slices(tmp_path: Path) -> None:
    classic, enhanced = _enhanced(tmp_path)
    assert int(pydicom.dcmread(enhanced).NumberOfFrames) == _crop(THICK).shape[2]
    got, want = read_series_geometry(enhanced), read_series_geometry(classic)
    np.testing.assert_allclose(got.affine, want.affine, atol=1e-4)
    assert got.shape == want.shape and set(got.files) == {enhanced}
    assert list(got.frames) != sorted(got.frames)  # the converter stored the frames top down: order by position
    np.testing.assert_array_equal(_load(enhanced.parent), _load(classic))
    np.testing.assert_array_equal(_load(enhanced), _load(classic))
    assert find_inputs(enhanced.parent) == [("enhanced", enhanced.parent)]


def _edit_frames(path: Path, change: Callable[[pydicom.Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def _duplicate_frame(ds: pydicom.Dataset) -> None:
    ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence = ds.PerFrameFunctionalGroupsSequence[
        4
    ].PlanePositionSequence


def _drop_position(ds: pydicom.Dataset) -> None:
    del ds.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence


def _rescale_frame(ds: pydicom.Dataset) -> None:
    """Frame 2 stores HU / 2 with slope 2 in its own Pixel Value Transformation group."""
    transformation = pydicom.Dataset()
    transformation.RescaleSlope, transformation.RescaleIntercept, transformation.RescaleType = 2, 0, "HU"
    ds.PerFrameFunctionalGroupsSequence[1].PixelValueTransformationSequence = [transformation]
    pixels = ds.pixel_array
    pixels[1] //= 2
    ds.PixelData = pixels.tobytes()


def test_enhanced_ct_geometry_and_rescale_come_from_each_frames_groups(tmp_path: Path) -> None:
    classic, enhanced = _enhanced(tmp_path)
    stored = pydicom.dcmread(enhanced).pixel_array[1].copy()
    _edit_frames(enhanced, _rescale_frame)
    frame_k = read_series_geometry(enhanced).frames.index(1)
    volume = _load(enhanced.parent)
    expected = (stored // 2).astype(np.float32) * 2
    # The loaded volume is in RAS; write_series' slices (and so the frames) are already RAS-canonical.
    np.testing.assert_array_equal(volume[:, :, frame_k], expected.T)
    _edit_frames(enhanced, _duplicate_frame)
    with pytest.raises(AttnUNetError, match=r"slices enhanced_ct.dcm frame \d+ and enhanced_ct.dcm frame \d+ lie at"):
        check_dicom_series(enhanced)
    _edit_frames(enhanced, _drop_position)
    with pytest.raises(AttnUNetError, match=r"enhanced_ct.dcm: frame 3: no PlanePositionSequence in the per-frame"):
        check_dicom_series(enhanced.parent)


def test_dicom_seg_of_a_study_case_references_its_series(study: Path, tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom", reason="DICOM-SEG output needs highdicom (attnunet[dicom])")
    from attnunet.io.dicom_seg import write_dicom_seg  # noqa: PLC0415 - needs the optional highdicom

    _, source = find_inputs(study, series=3)[0]
    geometry = read_series_geometry(source)
    labels = np.zeros(geometry.shape, np.uint8)
    labels[5:12, 4:9, 10:14] = 1
    write_dicom_seg(labels, source, {0: "background", 1: "pancreas"}, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    own = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in geometry.files}
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == pydicom.dcmread(source, stop_before_pixels=True).SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == own
    assert seg.NumberOfFrames == 4  # slices 10..13 hold the label
    assert hd.seg.Segmentation.from_dataset(seg).get_segment_numbers() == [1]


def test_dicom_seg_of_an_enhanced_ct_puts_each_frame_on_its_source_frame(tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason="DICOM-SEG output needs highdicom (attnunet[dicom])")
    from attnunet.io.dicom_seg import write_dicom_seg  # noqa: PLC0415 - needs the optional highdicom

    _, enhanced = _enhanced(tmp_path)
    geometry = read_series_geometry(enhanced)
    labels = np.zeros(geometry.shape, np.uint8)
    labels[2:9, 3:8, 2] = 1  # one slice, k = 2, holds the label
    write_dicom_seg(labels, enhanced, {0: "background", 1: "pancreas"}, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(enhanced).SeriesInstanceUID
    (frame,) = seg.PerFrameFunctionalGroupsSequence
    (source,) = frame.DerivationImageSequence[0].SourceImageSequence
    assert source.ReferencedFrameNumber == geometry.frames[2] + 1
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), labels[:, :, 2].T == 1)


@pytest.mark.slow
def test_infer_on_a_study_folder_segments_each_series(study: Path, tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason="output_format=both needs highdicom (attnunet[dicom])")
    checkpoint = make_checkpoint(tmp_path / "model.ckpt", spacing=(6.0, 6.0, 6.0))
    out = tmp_path / "out"
    args = [f"ckpt_path={checkpoint}", f"input={study}", f"output_dir={out}", "output_format=both"]
    result = run_cli("infer", args, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 done, 0 already finished, 0 failed" in result.stdout
    assert result.stderr.count("skipped ") + result.stdout.count("skipped ") == 4
    for name, crop in (("Study_ä_s2_Abdomen_3.0_Br40", THICK), ("Study_ä_s3_Abdomen_Venös_1_5_B30f", THIN)):
        assert nib.load(out / f"{name}_seg.nii.gz").shape == _crop(crop).shape
        assert (out / f"{name}_seg.dcm").is_file()
    result = run_cli("infer", [*args, "series=2", f"output_dir={tmp_path / 'one'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [
        "Study_ä_s2_Abdomen_3.0_Br40_seg.dcm",
        "Study_ä_s2_Abdomen_3.0_Br40_seg.nii.gz",
    ]
