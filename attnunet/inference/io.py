"""Finding input cases and writing NIfTI outputs atomically on the input's own grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from attnunet.data.datalist import load_cases
from attnunet.errors import AttnUNetError
from attnunet.io.dicom import dicom_series_dirs, is_dicom_file
from attnunet.io.dicom_study import study_cases
from attnunet.io.naming import case_names, is_nifti, require_unique
from attnunet.io.nifti_order import in_nifti_order
from attnunet.utils.atomic import atomic_target
from attnunet.utils.folders import writable_folder


def find_inputs(input_path: str | Path, series: str | int | None = None) -> list[tuple[str, Path]]:
    """``(case, image path)`` for a NIfTI file, a folder of NIfTI files, a DICOM folder (one series,
    a whole study, or folders of them: one case per series that can be segmented, see
    :mod:`attnunet.io.dicom_study`), a DICOM file (its series), or an MSD ``dataset.json`` (its
    ``test`` list). ``series`` (SeriesNumber or SeriesInstanceUID) keeps only that DICOM series.
    Case names follow :mod:`attnunet.io.naming` and must be unique."""
    path = Path(input_path).expanduser()
    if not path.exists():
        raise AttnUNetError("input does not exist", path)
    pick = None if series is None else str(series)
    if path.is_file() and path.suffix == ".json":
        cases = [(c["case_id"], Path(c["image"])) for c in load_cases(path, key="test", require_label=False)]
    elif path.is_file() and is_dicom_file(path):
        cases = study_cases(path, pick)
    elif path.is_file():
        if not is_nifti(path):
            raise AttnUNetError(
                "input must be .nii/.nii.gz, DICOM (a file or folder), a folder of them or a dataset.json", path
            )
        cases = [(case_names([path])[0], path)]
    else:
        files = sorted(p for p in path.iterdir() if p.is_file() and is_nifti(p))
        if not files and not dicom_series_dirs(path):
            raise AttnUNetError("folder holds no .nii/.nii.gz files and no DICOM series", path)
        cases = list(zip(case_names(files), files)) if files else study_cases(path, pick)
        if not cases:
            raise AttnUNetError("no DICOM series here can be segmented (see the skipped series above)", path)
    if pick is not None and any(is_nifti(p) for _, p in cases):
        raise AttnUNetError(f"series={pick} picks a DICOM series, but the input holds NIfTI files", path)
    require_unique([c for c, _ in cases], path)
    return cases


def prepare_output_dir(output_dir: str | Path) -> Path:
    """Create ``output_dir``; a clear error when it is a file or cannot be written."""
    return writable_folder(output_dir, "output_dir")


def save_like(
    array: np.ndarray, reference: nib.Nifti1Image, path: Path, inputs: set[Path], slope: float | None = None
) -> None:
    """Write ``array`` with ``reference``'s affine, qform/sform codes and units, atomically.

    ``slope``: ``array`` holds integer codes of a float quantity, stored as they are with this NIfTI
    slope (intercept 0), so that readers get ``code * slope`` back; by default values are stored
    unscaled, in the array's own type. The data goes to a temporary file in the same
    folder first and is renamed over ``path`` only when complete, so an interrupted run never leaves
    a file that looks finished. ``inputs`` are never overwritten. Arrays in any memory layout are
    laid out in NIfTI's voxel order first (:func:`~attnunet.io.nifti_order.in_nifti_order`).
    """
    if path.resolve() in inputs:
        raise AttnUNetError("refusing to overwrite an input file", path)
    header = reference.header.copy()
    header.set_data_dtype(array.dtype)
    image = nib.Nifti1Image(in_nifti_order(array), reference.affine, header=header)
    image.header.set_slope_inter(1.0 if slope is None else slope, 0.0)  # the constructor resets it
    # Mirror the input's qform and sform exactly, codes included (a viewer may prefer either).
    qform, qcode = reference.get_qform(coded=True)
    sform, scode = reference.get_sform(coded=True)
    image.set_qform(qform if qcode else None, code=int(qcode))
    image.set_sform(sform if scode else None, code=int(scode))
    try:
        with atomic_target(path, suffix=".nii.gz") as tmp:
            nib.save(image, tmp)
    except OSError as e:
        raise AttnUNetError(f"could not write output ({e.strerror})", path) from None
