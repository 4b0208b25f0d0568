"""DICOM series: finding them, checking a folder holds one, and writing one (synthetic NIH-style data)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from attnunet.errors import AttnUNetError


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 file: 128-byte preamble then ``DICM``."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def dicom_series_dirs(folder: Path) -> list[Path]:
    """Folders (``folder`` itself or below it) that directly hold DICOM files."""
    found = []
    for directory in sorted([folder, *(p for p in folder.rglob("*") if p.is_dir())]):
        if any(is_dicom_file(f) for f in directory.iterdir() if f.is_file()):
            found.append(directory)
    return found


def check_dicom_series(folder: Path) -> None:
    """A DICOM input folder must hold exactly one series (MONAI's reader would silently stack several)."""
    import pydicom  # noqa: PLC0415 - only needed for DICOM inputs

    series: set[str] = set()
    for f in folder.iterdir():
        if not f.is_file():
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:  # noqa: BLE001, S112 - non-DICOM files (DICOMDIR indexes, notes) are ignored
            continue
        series.add(str(getattr(ds, "SeriesInstanceUID", "")))
    if not series:
        raise AttnUNetError("folder holds no DICOM files", folder)
    if len(series) > 1:
        raise AttnUNetError(f"folder mixes {len(series)} DICOM series; give one series per folder", folder)


def write_series(nifti: Path | nib.Nifti1Image, folder: Path, series_uid: str | None = None) -> Path:
    """Write a NIfTI volume as a CT series, one file per slice along its RAS third axis (geometry
    converted from RAS to DICOM's LPS). Returns ``folder``."""
    from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: PLC0415
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: PLC0415

    img = nib.as_closest_canonical(nifti if isinstance(nifti, nib.Nifti1Image) else nib.load(nifti))
    data = np.asanyarray(img.dataobj).astype(np.int16)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    col_dir = lps[:3, 0] / np.linalg.norm(lps[:3, 0])  # voxel axis 0: along a row (DICOM columns)
    row_dir = lps[:3, 1] / np.linalg.norm(lps[:3, 1])  # voxel axis 1: down the rows
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    for k in range(data.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"slice{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID = "CT", "test"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in (lps @ np.array([0, 0, k, 1]))[:3]]
        ds.ImageOrientationPatient = [float(v) for v in (*col_dir, *row_dir)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # row spacing, column spacing
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(data[:, :, k].T).tobytes()  # rows x columns
        ds.save_as(folder / f"slice{k:04d}.dcm", enforce_file_format=True)
    return folder
