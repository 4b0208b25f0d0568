"""DICOM series: finding them, checking their geometry and reading them (writing: ``attnunet.utils.dicom_writer``).

A series folder is read by :class:`DicomSeriesReader`, one of the readers the preprocessing gives
MONAI's ``LoadImage`` (``attnunet.data.transforms.IMAGE_READERS``). Slices are
ordered by their position along the slice normal, never by InstanceNumber, and the affine comes
from the slices' own ImagePositionPatient/ImageOrientationPatient/PixelSpacing. A series whose
slices do not form one regular grid (duplicate or missing slices, uneven spacing, gantry tilt,
orientation changing between slices, geometry tags missing) is refused with a one-line
:class:`AttnUNetError` instead of being loaded on a wrong grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from monai.data.image_reader import ImageReader
from monai.utils import ensure_tuple

from attnunet.errors import AttnUNetError

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage: an index, not an image
GRID_TOLERANCE = 0.1  # a slice may lie at most this fraction of a voxel off the regular grid it is read on
ORIENTATION_TOLERANCE = 1e-3  # direction cosines of two slices of one series agree this closely (~0.06 degrees)
UNIT_TOLERANCE = 1e-2  # ImageOrientationPatient rows are unit vectors and orthogonal to this precision
DUPLICATE_MM = 0.01  # two slices closer than this along the slice normal share one position
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
HEADER_TAGS = [
    "SeriesInstanceUID",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
]


@dataclass(frozen=True)
class SeriesGeometry:
    """The regular voxel grid a DICOM series is read on.

    Attributes:
        folder: the series folder.
        files: one file per slice, ordered by position along the slice normal (voxel index ``k``).
        affine: ``(4, 4)`` voxel ``(column, row, slice)`` to world mm in RAS, as NIfTI and MONAI use.
        shape: ``(Columns, Rows, slices)``.
    """

    folder: Path
    files: tuple[Path, ...]
    affine: np.ndarray
    shape: tuple[int, int, int]


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 file: 128-byte preamble then ``DICM``."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_dicomdir(path: Path) -> bool:
    """A DICOMDIR index (by its name or its SOP class), which lists images but is none."""
    if path.name.upper() == "DICOMDIR":
        return True
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:  # noqa: BLE001 - a file whose meta cannot be read is reported when the series is read
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS


def image_files(folder: Path) -> list[Path]:
    """DICOM files directly in ``folder``, DICOMDIR indexes left out, sorted by name."""
    return [f for f in sorted(folder.iterdir()) if f.is_file() and is_dicom_file(f) and not is_dicomdir(f)]


def dicom_series_dirs(folder: Path) -> list[Path]:
    """Folders (``folder`` itself or below it) that directly hold DICOM image files (not only a DICOMDIR)."""
    found = []
    for directory in sorted([folder, *(p for p in folder.rglob("*") if p.is_dir())]):
        if any(f.is_file() and is_dicom_file(f) and not is_dicomdir(f) for f in directory.iterdir()):
            found.append(directory)
    return found


def check_dicom_series(folder: Path) -> None:
    """A DICOM input folder must hold exactly one series whose slices form a regular grid
    (see :func:`read_series_geometry`); raises :class:`AttnUNetError` otherwise."""
    read_series_geometry(folder)


def read_series_geometry(folder: Path) -> SeriesGeometry:
    """Read the slice headers of the one series in ``folder`` and derive its voxel grid.

    Slices are sorted by ImagePositionPatient projected on the slice normal (row direction x column
    direction); InstanceNumber is not used. Refused, naming the folder or file and the numbers: no
    DICOM files, several series, multi-frame or colour files, a missing or invalid
    ImageOrientationPatient/ImagePositionPatient/PixelSpacing, orientation, pixel spacing or image
    size changing between slices, fewer than 2 slices, duplicate positions, gantry tilt (positions
    not moving along the slice normal) and uneven slice spacing (missing slices), each beyond
    :data:`GRID_TOLERANCE` of a voxel.
    """
    files = image_files(folder)
    if not files:
        raise AttnUNetError("folder holds no DICOM files", folder)
    headers = [_read_header(f) for f in files]
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise AttnUNetError(f"folder mixes {len(series)} DICOM series; give one series per folder", folder)
    if len(files) < 2:
        raise AttnUNetError(f"series has {len(files)} slice; a 3D volume needs at least 2", folder)
    first = _slice_geometry(files[0], headers[0])
    positions = np.empty((len(files), 3))
    for i, (f, h) in enumerate(zip(files, headers, strict=True)):
        g = _slice_geometry(f, h)
        if np.abs(g["orientation"] - first["orientation"]).max() > ORIENTATION_TOLERANCE:
            raise AttnUNetError(
                f"ImageOrientationPatient {_fmt(g['orientation'])} differs from {_fmt(first['orientation'])} "
                f"in {files[0].name} (one series must keep one orientation)",
                f,
            )
        for key, name in (("pixel_spacing", "PixelSpacing"), ("size", "Rows x Columns")):
            if not np.allclose(g[key], first[key], rtol=1e-4, atol=0):
                raise AttnUNetError(f"{name} {_fmt(g[key])} differs from {_fmt(first[key])} in {files[0].name}", f)
        positions[i] = g["position"]
    row_dir, col_dir = first["orientation"][:3], first["orientation"][3:]
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    files, positions, along = [files[i] for i in order], positions[order], along[order]
    _check_spacing(folder, files, positions, along, normal, first["pixel_spacing"])
    column_spacing, row_spacing = first["pixel_spacing"][1], first["pixel_spacing"][0]
    lps = np.eye(4)
    lps[:3, 0] = row_dir / np.linalg.norm(row_dir) * column_spacing  # voxel axis 0: along a row
    lps[:3, 1] = col_dir / np.linalg.norm(col_dir) * row_spacing  # voxel axis 1: down a column
    # Positions are decimal strings of at most 16 characters: round the spacing derived from them to 1e-6 mm,
    # so a 2.5 mm series is read at 2.5 mm, not 2.4999999999999964 (which moves resampled grid sizes at ties).
    lps[:3, 2] = normal * round((along[-1] - along[0]) / (len(files) - 1), 6)
    lps[:3, 3] = positions[0]
    rows, columns = (int(n) for n in first["size"])
    return SeriesGeometry(folder, tuple(files), LPS_TO_RAS @ lps, (columns, rows, len(files)))


def read_series_voxels(geometry: SeriesGeometry) -> np.ndarray:
    """Decode every slice (compressed transfer syntaxes via the pylibjpeg plugins) and apply
    RescaleSlope/RescaleIntercept: float32 ``(Columns, Rows, slices)`` on ``geometry``'s grid."""
    volume = np.empty(geometry.shape, dtype=np.float32)
    for k, f in enumerate(geometry.files):
        try:
            ds = pydicom.dcmread(f)
        except Exception as e:  # noqa: BLE001 - pydicom raises many types for broken files
            raise AttnUNetError(f"unreadable DICOM file ({type(e).__name__})", f) from None
        try:
            pixels = ds.pixel_array
        except Exception as e:  # noqa: BLE001 - decoders raise many types; the file and the cause are reported
            syntax = ds.file_meta.get("TransferSyntaxUID", "unknown transfer syntax")
            detail = (str(e).strip() or type(e).__name__).splitlines()[0][:200]
            raise AttnUNetError(f"cannot decode pixel data ({getattr(syntax, 'name', syntax)}): {detail}", f) from None
        if pixels.shape != geometry.shape[1::-1]:
            raise AttnUNetError(f"pixel data of shape {pixels.shape} does not match Rows x Columns", f)
        slope, intercept = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
        volume[:, :, k] = pixels.T.astype(np.float32) * slope + intercept
    return volume


class DicomSeriesReader(ImageReader):
    """MONAI image reader for one folder holding one DICOM series, on the grid of
    :func:`read_series_geometry` (MONAI's PydicomReader orders slices by InstanceNumber, drops
    slices without one and spans the grid from the first to the last slice, unchecked).

    Output of ``LoadImage``: ``(Columns, Rows, slices)`` float32 HU with a RAS ``affine``.
    """

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """Claims exactly one folder; files (NIfTI, single DICOM files) are left to the other readers."""
        names = ensure_tuple(filename)
        return len(names) == 1 and Path(names[0]).is_dir()

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> SeriesGeometry:
        """Headers only: the validated geometry (voxels are read by :meth:`get_data`)."""
        (folder,) = ensure_tuple(data)
        return read_series_geometry(Path(folder))

    def get_data(self, img: SeriesGeometry) -> tuple[np.ndarray, dict[str, Any]]:
        """Voxels ``(Columns, Rows, slices)`` and the metadata MONAI's readers give (affine in RAS)."""
        affine = img.affine.copy()
        meta = {
            "affine": affine,
            "original_affine": affine.copy(),
            "spatial_shape": np.asarray(img.shape),
            "space": "RAS",
            "original_channel_dim": float("nan"),
            "spacing": np.linalg.norm(affine[:3, :3], axis=0),
        }
        return read_series_voxels(img), meta


def _read_header(path: Path) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for broken files
        raise AttnUNetError(f"unreadable DICOM file ({type(e).__name__})", path) from None
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        frames = ds.NumberOfFrames
        raise AttnUNetError(f"multi-frame DICOM ({frames} frames) is not supported; give one file per slice", path)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise AttnUNetError(f"SamplesPerPixel is {ds.SamplesPerPixel}; a CT slice has one grey value per pixel", path)
    return ds


def _slice_geometry(path: Path, ds: pydicom.Dataset) -> dict[str, np.ndarray]:
    """``orientation`` (6,), ``position`` (3,), ``pixel_spacing`` (2,) (row, column spacing) and
    ``size`` (2,) (Rows, Columns) of one slice, checked."""
    values = {
        "orientation": _floats(path, ds, "ImageOrientationPatient", 6),
        "position": _floats(path, ds, "ImagePositionPatient", 3),
        "pixel_spacing": _floats(path, ds, "PixelSpacing", 2),
        "size": _floats(path, ds, "Rows", 1).tolist() + _floats(path, ds, "Columns", 1).tolist(),
    }
    row_dir, col_dir = values["orientation"][:3], values["orientation"][3:]
    norms = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    if max(abs(n - 1) for n in norms) > UNIT_TOLERANCE or abs(row_dir @ col_dir) > UNIT_TOLERANCE:
        raise AttnUNetError(
            f"ImageOrientationPatient {_fmt(values['orientation'])} is not two orthogonal unit vectors", path
        )
    if np.any(values["pixel_spacing"] <= 0) or np.any(np.asarray(values["size"]) < 1):
        raise AttnUNetError(
            f"PixelSpacing {_fmt(values['pixel_spacing'])} / Rows x Columns {_fmt(values['size'])} must be positive",
            path,
        )
    return {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}


def _floats(path: Path, ds: pydicom.Dataset, keyword: str, count: int) -> np.ndarray:
    if keyword not in ds or ds[keyword].value in (None, ""):
        raise AttnUNetError(f"no {keyword}; the slice geometry is unknown", path)
    value = ds[keyword].value
    try:
        numbers = np.asarray([float(v) for v in (value if count > 1 else [value])], dtype=np.float64)
    except (TypeError, ValueError):
        raise AttnUNetError(f"{keyword} {value!r} is not {count} numbers", path) from None
    if numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        raise AttnUNetError(f"{keyword} {value!r} is not {count} finite numbers", path)
    return numbers


def _check_spacing(
    folder: Path,
    files: list[Path],
    positions: np.ndarray,
    along: np.ndarray,
    normal: np.ndarray,
    pixel_spacing: np.ndarray,
) -> None:
    """Slices sorted by ``along`` (their position on ``normal``, mm) must be distinct, stacked
    straight along the normal and evenly spaced, each within :data:`GRID_TOLERANCE` of a voxel."""
    gaps = np.diff(along)
    if gaps.min() < DUPLICATE_MM:
        i = int(np.argmin(gaps))
        raise AttnUNetError(
            f"slices {files[i].name} and {files[i + 1].name} lie at the same position "
            f"({along[i]:.3f} mm along the slice normal); duplicate slices",
            folder,
        )
    offsets = positions - positions[0]
    sideways = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)
    if sideways.max() > GRID_TOLERANCE * pixel_spacing.min():
        tilt = np.degrees(np.arctan2(sideways[-1], along[-1] - along[0]))
        raise AttnUNetError(
            f"slice positions move {sideways.max():.2f} mm sideways of the slice normal over the series "
            f"(gantry tilt of {tilt:.1f} degrees?); resample it to an orthogonal grid first",
            folder,
        )
    step = (along[-1] - along[0]) / (len(along) - 1)
    off_grid = np.abs(along - (along[0] + step * np.arange(len(along))))
    if off_grid.max() > GRID_TOLERANCE * step:
        found = np.unique(np.round(gaps, 3))
        shown = ", ".join(f"{g:g}" for g in found[:6]) + (", ..." if len(found) > 6 else "")
        raise AttnUNetError(
            f"uneven slice spacing: gaps of {shown} mm between {len(files)} slices (missing slices?)", folder
        )


def _fmt(values: np.ndarray | Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"
