"""Writing a NIfTI volume as a DICOM CT series (the NIH-style synthetic layout, and tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds


def _ds(values: Sequence[float] | np.ndarray) -> list[str]:
    """Decimal strings of at most 16 characters, as the DS value representation requires."""
    return [format_number_as_ds(float(v)) for v in values]


def write_series(nifti: Path | nib.Nifti1Image, folder: Path, series_uid: str | None = None) -> Path:
    """Write a NIfTI volume as a CT series, one file per slice along its RAS third axis (geometry
    converted from RAS to DICOM's LPS). Returns ``folder``."""
    img = nib.as_closest_canonical(nifti if isinstance(nifti, nib.Nifti1Image) else nib.load(nifti))
    data = np.asanyarray(img.dataobj).astype(np.int16)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    col_dir = lps[:3, 0] / np.linalg.norm(lps[:3, 0])  # voxel axis 0: along a row (DICOM columns)
    row_dir = lps[:3, 1] / np.linalg.norm(lps[:3, 1])  # voxel axis 1: down the rows
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid, frame_of_reference = generate_uid(), generate_uid()
    for k in range(data.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"slice{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID = "CT", "test"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_of_reference
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = _ds((lps @ np.array([0, 0, k, 1]))[:3])
        ds.ImageOrientationPatient = _ds([*col_dir, *row_dir])
        ds.PixelSpacing = _ds([spacing[1], spacing[0]])  # row spacing, column spacing
        ds.SliceThickness = format_number_as_ds(float(spacing[2]))
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(data[:, :, k].T).tobytes()  # rows x columns
        ds.save_as(folder / f"slice{k:04d}.dcm", enforce_file_format=True)
    return folder
