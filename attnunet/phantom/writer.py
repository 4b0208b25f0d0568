"""Write the synthetic phantoms in a real dataset's layout (MSD, nnU-Net v2 raw, NIH Pancreas-CT).

Every case is stored in one of several orientations, so training exercises the real reorientation
and resampling path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np

from attnunet.io.dicom_writer import write_series
from attnunet.io.nifti_order import in_nifti_order
from attnunet.phantom.appearance import PHASES
from attnunet.phantom.case import GENERATOR_VERSION, make_case
from attnunet.phantom.organs import paint_organs, with_organs
from attnunet.utils.atomic import NEW_FILE_MODE

LABELS = {"0": "background", "1": "pancreas", "2": "lesion"}
# Stored orientations: RAS, radiological LPS, mixed flips and permuted (through-plane first) axes.
ORIENTATIONS = ("RAS", "LPS", "LAS", "RPI", "SRA", "PLS", "LPI", "ASR")


TISSUE_DIR = "tissuesTr"  # per-case tissue maps beside imagesTr/ and labelsTr/ (msd and nnunet layouts)


def reorient(image: np.ndarray, label: np.ndarray, affine: np.ndarray, axcodes: str, *more: np.ndarray):
    """Store the same scan in another voxel order; the world-space content is unchanged.

    Returns ``(image, label, new_affine, *more)``: ``more`` are further maps on the same grid.
    """
    transform = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(tuple(axcodes))
    )
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, image.shape)
    image, label, *more = (nib.orientations.apply_orientation(a, transform) for a in (image, label, *more))
    return (image, label, new_affine, *more)


def _nifti(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(in_nifti_order(array), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return img


LAYOUTS = ("msd", "nnunet", "nih")


def write_dataset(
    output_dir: str | Path,
    num_cases: int,
    seed: int = 0,
    lesions: bool = False,
    layout: str = "msd",
    workers: int | None = None,
    phase: str | None = None,
    organs: bool = False,
) -> Path:
    """Write the synthetic set under ``output_dir`` in a real dataset's layout.

    ``msd``: ``imagesTr/``, ``labelsTr/`` and ``dataset.json`` with a ``training`` list (as MSD
    Task07); ``nnunet``: nnU-Net v2 raw (``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``,
    ``dataset.json`` with label names to values). Both also hold ``tissuesTr/<case>.nii.gz``, the
    tissue map each image was rendered from (uint8 :class:`~attnunet.phantom.canvas.Tissue`
    classes, same grid as the label), for appearance drawn anew per training patch. ``nih``: as
    TCIA ships NIH Pancreas-CT, a DICOM series per patient in
    ``Pancreas-CT/PANCREAS_NNNN/<study>/<series>/`` and canonical (RAS) NIfTI labels
    ``TCIA_pancreas_labels-02-05-2017/labelNNNN.nii.gz``.

    The dataset is built in a temporary sibling folder and renamed into place, so an interrupted
    run never leaves a half-written dataset. An existing non-empty ``output_dir`` is refused.
    ``workers`` processes generate cases side by side (``None``: one per usable CPU core); case
    ``i`` depends only on ``seed`` and ``i``, so the files are the same for any number of workers.
    ``phase`` forces every case's contrast phase (``non_contrast``, ``arterial`` or
    ``portal_venous``; None: drawn per case, the anatomy is the same either way).
    ``organs`` adds the organs around the pancreas as label classes after it (liver, spleen,
    kidney, gallbladder, gut, vessels: :mod:`attnunet.phantom.organs`); images are unchanged.
    Returns ``output_dir``'s ``dataset.json`` (msd, nnunet) or the folder itself (nih).
    """
    if num_cases < 1:
        raise ValueError(f"num_cases must be at least 1, got {num_cases}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if phase is not None and phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)} or null, got {phase!r}")
    if organs and layout == "nih":
        raise ValueError("organs needs a layout with a label list in dataset.json (msd or nnunet), not nih")
    out = Path(output_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: output folder exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    base_labels = LABELS if lesions else {k: v for k, v in LABELS.items() if k != "2"}
    labels = with_organs(base_labels) if organs else base_labels
    workers = min(num_cases, workers or len(os.sched_getaffinity(0)))
    try:
        organ_values = len(base_labels) if organs else None
        write_case = partial(_write_case, tmp, layout, seed, lesions=lesions, phase=phase, organs_from=organ_values)
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(write_case, range(num_cases)))  # list(): a worker's exception is raised here
        else:
            for i in range(num_cases):
                write_case(i)
        if layout == "msd":
            _write_msd_json(tmp / "dataset.json", labels, num_cases, seed)
        elif layout == "nnunet":
            meta = {
                "channel_names": {"0": "CT"},
                "labels": {name: int(value) for value, name in labels.items()},
                "numTraining": num_cases,
                "file_ending": ".nii.gz",
            }
            (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
        if out.exists():
            out.rmdir()
        os.chmod(tmp, NEW_FILE_MODE | (NEW_FILE_MODE & 0o444) >> 2)  # mkdtemp's 0700 -> a new folder's mode
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out if layout == "nih" else out / "dataset.json"


def _write_case(
    root: Path, layout: str, seed: int, index: int, lesions: bool, phase: str | None, organs_from: int | None
) -> None:
    """Generate case ``index`` and write it under ``root`` in ``layout`` (one process's share);
    ``organs_from``: paint the organ classes from this label value on (None: pancreas only)."""
    image, label, affine, tissue = make_case(seed, index, lesions, phase)
    if organs_from is not None:
        label = paint_organs(label, tissue, organs_from)
    axcodes = ORIENTATIONS[int(np.random.default_rng([seed, index, 99]).integers(len(ORIENTATIONS)))]
    if layout == "nih":
        _write_nih_case(root, index + 1, _nifti(image, affine), _nifti(label, affine))
        return
    image, label, affine, tissue = reorient(image, label, affine, axcodes, tissue)
    name, channel = f"synth_{index:03d}", "_0000" if layout == "nnunet" else ""
    files = (("imagesTr", image, name + channel), ("labelsTr", label, name), (TISSUE_DIR, tissue, name))
    for folder, array, file in files:
        (root / folder).mkdir(exist_ok=True)
        nib.save(_nifti(array, affine), root / folder / f"{file}.nii.gz")


def _write_msd_json(path: Path, labels: dict[str, str], num_cases: int, seed: int) -> None:
    names = [f"synth_{i:03d}" for i in range(num_cases)]
    meta = {
        "name": "SyntheticPancreasCT",
        "description": f"attnunet synthetic pancreas-style CT, generator v{GENERATOR_VERSION}, seed {seed}",
        "reference": "generated by attnunet.phantom",
        "licence": "CC0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": labels,
        "numTraining": num_cases,
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in names],
        "test": [],
    }
    path.write_text(json.dumps(meta, indent=2))


def _write_nih_case(root: Path, number: int, image: nib.Nifti1Image, label: nib.Nifti1Image) -> None:
    patient = f"PANCREAS_{number:04d}"
    series = root / "Pancreas-CT" / patient / f"11-24-2015-PANCREAS{number:04d}-Pancreas-1" / "Pancreas-1"
    write_series(image, series)
    labels = root / "TCIA_pancreas_labels-02-05-2017"
    labels.mkdir(parents=True, exist_ok=True)
    nib.save(nib.as_closest_canonical(label), labels / f"label{number:04d}.nii.gz")
