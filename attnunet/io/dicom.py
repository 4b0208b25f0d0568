"""DICOM series: finding them, checking their geometry and reading them (writing: ``attnunet.io.dicom_writer``).

A series is given as a folder holding it alone, or as one of its files, which stands for every file
in the same folder with that file's SeriesInstanceUID (how a case of a whole-study folder is named:
see :mod:`attnunet.io.dicom_study`). It is read by :class:`DicomSeriesReader`, one of the readers
the preprocessing gives MONAI's ``LoadImage`` (``attnunet.data.transforms.IMAGE_READERS``).

A series is a stack of 2D images: one per classic slice file, or the frames of an enhanced
(multi-frame) CT file, whose position, orientation, pixel spacing and rescale come from its per-frame
and shared functional groups. Images are ordered by their position along the slice normal, never by
InstanceNumber or frame number, and the affine comes from their own ImagePositionPatient,
ImageOrientationPatient and PixelSpacing. A series whose images do not form one regular grid
(duplicate or missing slices, uneven spacing, gantry tilt, orientation changing between slices,
geometry tags missing) is refused with a one-line :class:`AttnUNetError` instead of being loaded on
a wrong grid.
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
    "SOPClassUID",
    "Modality",
    "ImageType",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
]


@dataclass(frozen=True)
class SliceHeader:
    """Where one 2D image of a series lies: a classic slice file, or one frame of a multi-frame file.

    Attributes:
        file: the DICOM file.
        frame: 0-based frame index in a multi-frame file; ``None`` for a single-frame file.
        orientation: ``(6,)`` ImageOrientationPatient (row direction, column direction; LPS).
        position: ``(3,)`` ImagePositionPatient of the first pixel, mm (LPS).
        pixel_spacing: ``(2,)`` PixelSpacing (row spacing, column spacing), mm.
        size: ``(2,)`` Rows, Columns.
    """

    file: Path
    frame: int | None
    orientation: np.ndarray
    position: np.ndarray
    pixel_spacing: np.ndarray
    size: np.ndarray

    @property
    def name(self) -> str:
        """How errors name the image: the file name, and the frame (counted from 1) when multi-frame."""
        return self.file.name if self.frame is None else f"{self.file.name} frame {self.frame + 1}"


@dataclass(frozen=True)
class SeriesGeometry:
    """The regular voxel grid a DICOM series is read on.

    Attributes:
        source: the series folder, or the file that stands for its series.
        files: per slice (voxel index ``k``, ordered by position along the slice normal) its file.
        frames: per slice its frame in that file (``None``: a single-frame file).
        affine: ``(4, 4)`` voxel ``(column, row, slice)`` to world mm in RAS, as NIfTI and MONAI use.
        shape: ``(Columns, Rows, slices)``.
    """

    source: Path
    files: tuple[Path, ...]
    frames: tuple[int | None, ...]
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


def check_dicom_series(source: Path) -> None:
    """A DICOM input (a folder holding one series, or a file standing for its series) must form a
    regular grid (see :func:`read_series_geometry`); raises :class:`AttnUNetError` otherwise."""
    read_series_geometry(source)


def read_headers(files: Sequence[Path]) -> list[pydicom.Dataset]:
    """The headers (:data:`HEADER_TAGS`, no pixels) of ``files``; an unreadable file is a one-line error."""
    return [_read_header(f) for f in files]


def series_uid(header: pydicom.Dataset) -> str:
    return str(header.get("SeriesInstanceUID", ""))


def read_series_geometry(source: Path) -> SeriesGeometry:
    """Read the image headers of the series ``source`` stands for and derive its voxel grid.

    ``source`` is a folder holding one series, or one file of a series (the series is then every
    file in that folder with the file's SeriesInstanceUID; an enhanced CT file is usually a series of
    its own). Images (classic slices, or the frames of multi-frame files) are sorted by
    ImagePositionPatient projected on the slice normal (row direction x column direction);
    InstanceNumber is not used. Refused, naming the folder or file and the numbers: no DICOM files,
    several series in a folder, colour images, multi-frame files without per-frame functional
    groups, a missing or invalid ImageOrientationPatient/ImagePositionPatient/PixelSpacing,
    orientation, pixel spacing or image size changing between slices, fewer than 2 slices,
    duplicate positions, gantry tilt (positions not moving along the slice normal) and uneven slice
    spacing (missing slices), each beyond :data:`GRID_TOLERANCE` of a voxel.
    """
    if source.is_dir():
        files = image_files(source)
        if not files:
            raise AttnUNetError("folder holds no DICOM files", source)
        headers = read_headers(files)
        series = {series_uid(h) for h in headers}
        if len(series) > 1:
            raise AttnUNetError(
                f"folder mixes {len(series)} DICOM series; attnunet-infer input= reads each as a case "
                "(series= picks one), elsewhere give one series per folder",
                source,
            )
    else:
        (chosen,) = read_headers([source])
        siblings = [f for f in image_files(source.parent) if f != source]
        pairs = [(source, chosen)] + [
            (f, h) for f, h in zip(siblings, read_headers(siblings)) if series_uid(h) == series_uid(chosen)
        ]
        files, headers = [f for f, _ in pairs], [h for _, h in pairs]
    slices = [s for f, h in zip(files, headers, strict=True) for s in slice_headers(f, h)]
    if len(slices) < 2:
        raise AttnUNetError(f"series has {len(slices)} slice; a 3D volume needs at least 2", source)
    first = slices[0]
    for s in slices:
        if np.abs(s.orientation - first.orientation).max() > ORIENTATION_TOLERANCE:
            raise AttnUNetError(
                f"ImageOrientationPatient {_fmt(s.orientation)} differs from {_fmt(first.orientation)} "
                f"in {first.name} (one series must keep one orientation)",
                s.file if s.frame is None else f"{s.file} frame {s.frame + 1}",
            )
        for key, name in (("pixel_spacing", "PixelSpacing"), ("size", "Rows x Columns")):
            if not np.allclose(getattr(s, key), getattr(first, key), rtol=1e-4, atol=0):
                raise AttnUNetError(
                    f"{name} {_fmt(getattr(s, key))} differs from {_fmt(getattr(first, key))} in {first.name}",
                    s.file,
                )
    row_dir, col_dir = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    positions = np.stack([s.position for s in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices, positions, along = [slices[i] for i in order], positions[order], along[order]
    _check_spacing(source, slices, positions, along, normal, first.pixel_spacing)
    column_spacing, row_spacing = first.pixel_spacing[1], first.pixel_spacing[0]
    lps = np.eye(4)
    lps[:3, 0] = row_dir / np.linalg.norm(row_dir) * column_spacing  # voxel axis 0: along a row
    lps[:3, 1] = col_dir / np.linalg.norm(col_dir) * row_spacing  # voxel axis 1: down a column
    # Positions are decimal strings of at most 16 characters: round the spacing derived from them to 1e-6 mm,
    # so a 2.5 mm series is read at 2.5 mm, not 2.4999999999999964 (which moves resampled grid sizes at ties).
    lps[:3, 2] = normal * round((along[-1] - along[0]) / (len(slices) - 1), 6)
    lps[:3, 3] = positions[0]
    rows, columns = (int(n) for n in first.size)
    return SeriesGeometry(
        source,
        tuple(s.file for s in slices),
        tuple(s.frame for s in slices),
        LPS_TO_RAS @ lps,
        (columns, rows, len(slices)),
    )


def slice_headers(path: Path, ds: pydicom.Dataset) -> list[SliceHeader]:
    """The 2D images of one file with their geometry: one for a classic slice, one per frame of a
    multi-frame file (from its functional groups); colour images and multi-frame files without
    per-frame functional groups are refused."""
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise AttnUNetError(f"SamplesPerPixel is {ds.SamplesPerPixel}; a CT slice has one grey value per pixel", path)
    size = np.concatenate([_floats(path, ds, "Rows", 1), _floats(path, ds, "Columns", 1)])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not per_frame:
        if frames > 1:
            raise AttnUNetError(
                f"multi-frame DICOM ({frames} frames) without per-frame functional groups: its frames have "
                "no positions (an enhanced CT has them; give classic slices otherwise)",
                path,
            )
        return [
            _checked_slice(
                path,
                None,
                _floats(path, ds, "ImageOrientationPatient", 6),
                _floats(path, ds, "ImagePositionPatient", 3),
                _floats(path, ds, "PixelSpacing", 2),
                size,
            )
        ]
    if len(per_frame) != frames:
        raise AttnUNetError(f"{len(per_frame)} per-frame functional groups for {frames} frames", path)
    slices = []
    for i in range(frames):
        where = f"frame {i + 1}: "
        slices.append(
            _checked_slice(
                path,
                i,
                _floats(
                    path, functional_group(ds, i, "PlaneOrientationSequence", path), "ImageOrientationPatient", 6, where
                ),
                _floats(path, functional_group(ds, i, "PlanePositionSequence", path), "ImagePositionPatient", 3, where),
                _floats(path, functional_group(ds, i, "PixelMeasuresSequence", path), "PixelSpacing", 2, where),
                size,
            )
        )
    return slices


def functional_group(ds: pydicom.Dataset, frame: int, sequence: str, path: Path | None = None) -> pydicom.Dataset:
    """The ``sequence`` macro (e.g. ``PlanePositionSequence``) of ``frame`` in a multi-frame file:
    from the frame's per-frame functional group, else from the shared one. Missing in both: an error
    naming the file when ``path`` is given, else an empty dataset (for optional macros)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for group in (per_frame[frame] if frame < len(per_frame) else None, shared[0] if shared else None):
        if group is not None and group.get(sequence):
            return group.get(sequence)[0]
    if path is not None:
        raise AttnUNetError(f"frame {frame + 1}: no {sequence} in the per-frame or shared functional groups", path)
    return pydicom.Dataset()


def rescale(ds: pydicom.Dataset, frame: int | None) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of a classic slice, or of ``frame`` of a multi-frame file
    (its Pixel Value Transformation functional group); (1, 0) when absent."""
    source = ds if frame is None else functional_group(ds, frame, "PixelValueTransformationSequence")
    return float(source.get("RescaleSlope", 1.0)), float(source.get("RescaleIntercept", 0.0))


def read_series_voxels(geometry: SeriesGeometry) -> np.ndarray:
    """Decode every image (compressed transfer syntaxes via the pylibjpeg plugins) and apply
    RescaleSlope/RescaleIntercept: float32 ``(Columns, Rows, slices)`` on ``geometry``'s grid.
    Each file is decoded once, whatever number of frames it holds."""
    volume = np.empty(geometry.shape, dtype=np.float32)
    slots: dict[Path, list[tuple[int, int | None]]] = {}
    for k, (f, frame) in enumerate(zip(geometry.files, geometry.frames, strict=True)):
        slots.setdefault(f, []).append((k, frame))
    for f, images in slots.items():
        ds, pixels = _decode(f)
        for k, frame in images:
            image = pixels[frame] if frame is not None and pixels.ndim == 3 else pixels
            if image.shape != geometry.shape[1::-1]:
                raise AttnUNetError(f"pixel data of shape {image.shape} does not match Rows x Columns", f)
            slope, intercept = rescale(ds, frame)
            volume[:, :, k] = image.T.astype(np.float32) * slope + intercept
    return volume


class DicomSeriesReader(ImageReader):
    """MONAI image reader for one DICOM series (a folder holding it, or one of its files standing for
    it), on the grid of :func:`read_series_geometry` (MONAI's PydicomReader orders slices by
    InstanceNumber, drops slices without one and spans the grid from the first to the last slice,
    unchecked).

    Output of ``LoadImage``: ``(Columns, Rows, slices)`` float32 HU with a RAS ``affine``.
    """

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """Claims exactly one folder or DICOM file; NIfTI files are left to the other readers."""
        names = ensure_tuple(filename)
        return len(names) == 1 and (Path(names[0]).is_dir() or is_dicom_file(Path(names[0])))

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> SeriesGeometry:
        """Headers only: the validated geometry (voxels are read by :meth:`get_data`)."""
        (source,) = ensure_tuple(data)
        return read_series_geometry(Path(source))

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
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for broken files
        raise AttnUNetError(f"unreadable DICOM file ({type(e).__name__})", path) from None


def _decode(path: Path) -> tuple[pydicom.Dataset, np.ndarray]:
    """The dataset and its stored pixel values: ``(Rows, Columns)``, or ``(frames, Rows, Columns)``."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for broken files
        raise AttnUNetError(f"unreadable DICOM file ({type(e).__name__})", path) from None
    try:
        return ds, ds.pixel_array
    except Exception as e:  # noqa: BLE001 - decoders raise many types; the file and the cause are reported
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown transfer syntax")
        detail = (str(e).strip() or type(e).__name__).splitlines()[0][:200]
        raise AttnUNetError(f"cannot decode pixel data ({getattr(syntax, 'name', syntax)}): {detail}", path) from None


def _checked_slice(
    path: Path,
    frame: int | None,
    orientation: np.ndarray,
    position: np.ndarray,
    pixel_spacing: np.ndarray,
    size: np.ndarray,
) -> SliceHeader:
    """A :class:`SliceHeader`, its orientation two orthogonal unit vectors and its sizes positive."""
    where = "" if frame is None else f"frame {frame + 1}: "
    row_dir, col_dir = orientation[:3], orientation[3:]
    norms = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    if max(abs(n - 1) for n in norms) > UNIT_TOLERANCE or abs(row_dir @ col_dir) > UNIT_TOLERANCE:
        raise AttnUNetError(
            f"{where}ImageOrientationPatient {_fmt(orientation)} is not two orthogonal unit vectors", path
        )
    if np.any(pixel_spacing <= 0) or np.any(size < 1):
        raise AttnUNetError(
            f"{where}PixelSpacing {_fmt(pixel_spacing)} / Rows x Columns {_fmt(size)} must be positive", path
        )
    return SliceHeader(path, frame, orientation, position, pixel_spacing, size)


def _floats(path: Path, ds: pydicom.Dataset, keyword: str, count: int, where: str = "") -> np.ndarray:
    """``count`` finite numbers from ``ds.<keyword>``; ``where`` prefixes the error (``frame 3: ``)."""
    if keyword not in ds or ds[keyword].value in (None, ""):
        raise AttnUNetError(f"{where}no {keyword}; the slice geometry is unknown", path)
    value = ds[keyword].value
    try:
        numbers = np.asarray([float(v) for v in (value if count > 1 else [value])], dtype=np.float64)
    except (TypeError, ValueError):
        raise AttnUNetError(f"{where}{keyword} {value!r} is not {count} numbers", path) from None
    if numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        raise AttnUNetError(f"{where}{keyword} {value!r} is not {count} finite numbers", path)
    return numbers


def _check_spacing(
    source: Path,
    slices: list[SliceHeader],
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
            f"slices {slices[i].name} and {slices[i + 1].name} lie at the same position "
            f"({along[i]:.3f} mm along the slice normal); duplicate slices",
            source,
        )
    offsets = positions - positions[0]
    sideways = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)
    if sideways.max() > GRID_TOLERANCE * pixel_spacing.min():
        tilt = np.degrees(np.arctan2(sideways[-1], along[-1] - along[0]))
        raise AttnUNetError(
            f"slice positions move {sideways.max():.2f} mm sideways of the slice normal over the series "
            f"(gantry tilt of {tilt:.1f} degrees?); resample it to an orthogonal grid first",
            source,
        )
    step = (along[-1] - along[0]) / (len(along) - 1)
    off_grid = np.abs(along - (along[0] + step * np.arange(len(along))))
    if off_grid.max() > GRID_TOLERANCE * step:
        found = np.unique(np.round(gaps, 3))
        shown = ", ".join(f"{g:g}" for g in found[:6]) + (", ..." if len(found) > 6 else "")
        raise AttnUNetError(
            f"uneven slice spacing: gaps of {shown} mm between {len(slices)} slices (missing slices?)", source
        )


def _fmt(values: np.ndarray | Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"
