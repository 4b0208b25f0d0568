"""Write a predicted label volume as a DICOM Segmentation object (highdicom) beside its source series.

``write_dicom_seg(labels, series, label_names, path)`` takes the uint8 ``(X, Y, Z)`` labels that
the Predictor returns for a DICOM series input (a folder, or a file standing for its series): on
the grid of :func:`attnunet.io.dicom.read_series_geometry` (axis 0 = DICOM columns, axis 1 =
rows, axis 2 = the series' images ordered along the slice normal). Image ``k`` is therefore
``labels[:, :, k].T`` (rows x columns): a classic slice file, or a frame of an enhanced CT file.

The object (SegmentationType BINARY, one frame per source slice and segment that has voxels there):

* one segment per foreground label of ``label_names`` (every label but 0), **segment number =
  label value**, segment label = the label's name, so a reader maps segment ``n`` back to label
  ``n`` without a table. A label the prediction does not contain is still described (it just has no
  frames): the segment list is the model's label map, identical for every case of one model.
  With no foreground voxel at all every frame is written (all empty), since a SEG needs at least
  one frame: the object stays valid and says "nothing found" explicitly.
* coded with SNOMED CT: a label named like ``pancreas`` is Anatomical Structure / Pancreas
  (SCT 91723000 / 15776009); ``tumor``/``tumour``/``neoplasm``/``cancer`` Morphologically Abnormal
  Structure / Neoplasm (49755003 / 108369006); ``lesion`` the same category / Lesion (52988006);
  anything else Tissue / Tissue (85756007).
* algorithm identification: automatic, family Artificial Intelligence (DCM 123110), name
  ``attnunet``, version the package version; each frame references its source image (slice
  SOPInstanceUID, or frame of the enhanced CT), the object references the source series
  (ReferencedSeriesSequence); patient, study and frame of reference are the source series'.

The file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pydicom

import attnunet
from attnunet.errors import AttnUNetError
from attnunet.io.dicom import SeriesGeometry, read_series_geometry
from attnunet.utils.atomic import atomic_target

ALGORITHM_NAME = "attnunet"
SERIES_NUMBER = 9901  # a fixed, recognisable number for the derived series
NEOPLASM_WORDS = ("tumor", "tumour", "neoplasm", "cancer", "carcinoma")
# Type 2 attributes (present, may be empty) of the Patient and General Study modules that the SEG
# copies from its source; a source slice that lacks them gets them empty in memory (never on disk).
PATIENT_STUDY_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "ReferringPhysicianName",
    "AccessionNumber",
)


def write_dicom_seg(
    labels: np.ndarray,
    series: str | Path,
    label_names: Mapping[int, str],
    path: str | Path,
    *,
    series_description: str = "attnunet segmentation",
) -> Path:
    """Write ``labels`` (uint8 ``(Columns, Rows, slices)`` on the grid of ``series``, a folder or a
    file standing for its series) as a DICOM-SEG at ``path``.

    ``label_names`` is the model's label map ``{0: 'background', 1: 'pancreas', ...}`` (values
    0..K-1); returns ``path``. A shape that is not the series' grid or a value outside the label map
    is a one-line :class:`AttnUNetError`.
    """
    hd = _highdicom()
    series, path = Path(series), Path(path)
    geometry = read_series_geometry(series)
    labels = np.asarray(labels)
    if labels.shape != tuple(geometry.shape):
        raise AttnUNetError(
            f"labels of shape {labels.shape} are not on the series' grid {tuple(geometry.shape)} "
            "(columns, rows, slices)",
            series,
        )
    names = {int(k): str(v) for k, v in label_names.items()}
    if sorted(names) != list(range(len(names))) or len(names) < 2:
        raise AttnUNetError(f"label map must number its labels 0..K-1 with K >= 2, got {sorted(names)}")
    found = np.unique(labels)
    unknown = sorted(int(v) for v in found if int(v) not in names)
    if unknown:
        raise AttnUNetError(f"label values {unknown} are not in the label map {sorted(names)}", series)

    sources, frames = _sources_and_frames(geometry, labels, series)
    if "FrameOfReferenceUID" not in sources[0]:
        raise AttnUNetError(
            "the series has no FrameOfReferenceUID; a segmentation must share its source's frame of reference",
            series,
        )
    algorithm = hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME,
        version=attnunet.__version__,
        family=_codes().cid7162.ArtificialIntelligence,
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=value,
            segment_label=names[value][:64],
            segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for value in range(1, len(names))
        for category, kind in [_property_codes(names[value])]
    ]
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments,
            series_instance_uid=hd.UID(),
            series_number=SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="attnunet",
            manufacturer_model_name="attnunet",
            software_versions=attnunet.__version__,
            device_serial_number="0",
            series_description=series_description[:64],
            content_label="ATTNUNET",
            content_description="Automatic segmentation by attnunet",
            # Frames without a voxel of their segment are left out; with no foreground voxel at all
            # every (empty) frame is kept, since a SEG needs at least one frame.
            omit_empty_frames=bool(frames.any()),
        )
    except (ValueError, TypeError, AttributeError) as e:
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise AttnUNetError(f"cannot build a DICOM segmentation from this series ({detail})", series) from None
    with atomic_target(path, suffix=".dcm") as tmp:
        seg.save_as(tmp)
    return path


def _sources_and_frames(
    geometry: SeriesGeometry, labels: np.ndarray, series: Path
) -> tuple[list[pydicom.Dataset], np.ndarray]:
    """highdicom's source images and the uint8 ``(frames, Rows, Columns)`` array in their frame order:
    one frame per classic slice in grid order, or the frames of one enhanced CT file in its own order."""
    per_image = np.transpose(labels, (2, 1, 0)).astype(np.uint8)  # image k: labels[:, :, k] as rows x columns
    if all(frame is None for frame in geometry.frames):
        return [_read_source(f) for f in geometry.files], np.ascontiguousarray(per_image)
    if len(set(geometry.files)) > 1 or None in geometry.frames:
        raise AttnUNetError("DICOM-SEG of a series spread over several multi-frame files is not supported", series)
    frames = np.empty_like(per_image)
    frames[list(geometry.frames)] = per_image
    return [_read_source(geometry.files[0])], frames


def _property_codes(name: str) -> tuple[object, object]:
    """(segmented property category, type) for a label name, SNOMED CT."""
    codes = _codes()
    lower = name.lower()
    if "pancreas" in lower and not any(w in lower for w in (*NEOPLASM_WORDS, "lesion")):
        return codes.cid7150.AnatomicalStructure, codes.SCT.Pancreas
    if any(w in lower for w in NEOPLASM_WORDS):
        return codes.cid7150.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm
    if "lesion" in lower:
        return codes.cid7150.MorphologicallyAbnormalStructure, codes.SCT.Lesion
    return codes.cid7150.Tissue, codes.SCT.Tissue


def _read_source(path: Path) -> pydicom.Dataset:
    """A source slice's header (highdicom needs its geometry and identifiers, not its pixels), with
    missing type 2 patient/study attributes added empty."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for broken files
        raise AttnUNetError(f"unreadable DICOM file ({type(e).__name__})", path) from None
    for keyword in PATIENT_STUDY_TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _codes():
    from pydicom.sr.codedict import codes

    return codes


def _highdicom():
    try:
        import highdicom
    except ImportError:
        raise AttnUNetError("DICOM-SEG output needs the optional package: pip install 'attnunet[dicom]'") from None
    return highdicom
