"""What several test files share: paths, commands run against this source tree, test checkpoints,
re-stored scans and comparisons of predictions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from scipy import ndimage

from attnunet.cli.common import config_dir
from attnunet.training.module import SegmentationModule
from attnunet.utils import overlays

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CT = DATA / "abdomen_ct.nii.gz"
PANCREAS = DATA / "abdomen_pancreas.nii.gz"
SCRIPTS = ROOT / "scripts"
BINARY = {0: "background", 1: "pancreas"}
SMALL_NET = {"name": "attention_unet", "channels": [4, 8, 16]}


def source_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python process that imports ``attnunet`` from this source tree,
    as the in-process tests do (an installed copy would otherwise be imported instead)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_cli(
    command: str, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python -m attnunet <command> <args>`` in ``cwd``, run from this source tree."""
    return subprocess.run(
        [sys.executable, "-m", "attnunet", command, *args],
        cwd=cwd,
        env=env or source_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_attnunet(args: Sequence[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    """``python -m attnunet <args>`` with the synthetic data set generated into (or read from) ``cache``."""
    return run_cli(args[0], args[1:], cwd, env=source_env(ATTNUNET_CACHE=str(cache)))


def compose_train(overrides: list[str]) -> DictConfig:
    """Compose ``train.yaml`` exactly as ``attnunet-train`` would."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def make_checkpoint(
    path: Path,
    labels: dict[int, str] | None = None,
    spacing: Sequence[float] = (4.0, 4.0, 4.0),
    flip_axes: Sequence[int] = (0, 1, 2),
    model: dict[str, Any] | None = None,
    roi_size: Sequence[int] = (32, 32, 32),
) -> Path:
    """An untrained (seeded) checkpoint with the structure Lightning writes (``state_dict`` plus the
    model description) of ``model`` (default: a 3-level Attention U-Net), trained mirrored along
    ``flip_axes``."""
    torch.manual_seed(0)
    module = SegmentationModule(
        model=model or SMALL_NET,
        labels=labels or BINARY,
        preprocessing={"spacing": list(spacing), "intensity_window": [-175, 250]},
        sliding_window={"roi_size": list(roi_size), "overlap": 0.25, "sw_batch_size": 4},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True},
        flip_axes=flip_axes,
    )
    torch.save({"state_dict": module.state_dict(), "attnunet": module.describe()}, path)
    return path


def stored_as(src: Path | nib.Nifti1Image, axcodes: str, dst: Path) -> Path:
    """The same scan written with another voxel order (world content unchanged)."""
    img = src if isinstance(src, nib.Nifti1Image) else nib.load(src)
    ornt = nib.orientations.ornt_transform(nib.io_orientation(img.affine), nib.orientations.axcodes2ornt(axcodes))
    data = nib.orientations.apply_orientation(np.asanyarray(img.dataobj), ornt)
    nib.save(nib.Nifti1Image(data, img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape)), dst)
    return dst


def back_to_storage_of(array: np.ndarray, moved: Path, original: Path) -> np.ndarray:
    """``array`` on the grid of ``moved`` (``(*S)``, or ``(K, *S)`` with a leading class axis) in the
    voxel order of ``original``."""
    a, b = nib.load(moved), nib.load(original)
    ornt = nib.orientations.ornt_transform(nib.io_orientation(a.affine), nib.io_orientation(b.affine))
    if array.ndim == 3:
        return nib.orientations.apply_orientation(array, ornt)
    return np.moveaxis(nib.orientations.apply_orientation(np.moveaxis(array, 0, -1), ornt), -1, 0)


def assert_same_prediction(
    probabilities: np.ndarray, labels: np.ndarray, ref_probabilities: np.ndarray, ref_labels: np.ndarray, atol: float
) -> None:
    """Two predictions ``(K, *S)`` probabilities and ``(*S)`` labels agree: every probability within
    ``atol``, and the labels identical wherever the reference's two most likely classes are more
    than ``2 * atol`` apart (closer, a difference within tolerance may pick the other one)."""
    np.testing.assert_allclose(probabilities, ref_probabilities, rtol=0, atol=atol)
    top2 = np.sort(ref_probabilities, axis=0)[-2:]
    decided = (top2[1] - top2[0]) > 2 * atol
    assert decided.mean() > 0.9, "the reference is undecided almost everywhere: no label check"
    np.testing.assert_array_equal(labels[decided], ref_labels[decided])


def boxes(picture: np.ndarray, min_pixels: int = 1000) -> list[tuple[slice, slice]]:
    """Bounding boxes (rows, columns) of the connected regions that are not page background, left to
    right: the panels and the colour bar (text glyphs are smaller than ``min_pixels``)."""
    labelled, _ = ndimage.label((picture != overlays.BACKGROUND).any(-1))
    found = [(box, int((labelled[box] == i + 1).sum())) for i, box in enumerate(ndimage.find_objects(labelled))]
    return sorted((box for box, n in found if n >= min_pixels), key=lambda b: b[1].start)


def is_colour_bar(strip: np.ndarray) -> bool:
    """``strip`` ``(H, W, 3)`` is the colour map from 1 (top) to 0 (bottom) in every column."""
    expected = (overlays.colour_map(torch.linspace(1, 0, strip.shape[0])[:, None]) * 255).round()
    expected = expected.permute(1, 2, 0).numpy()
    green = strip[:, :, 1].astype(int)
    return bool(np.abs(strip - expected).max() <= 1 and (np.diff(green, axis=0) <= 0).all() and np.ptp(green) > 150)


def write_header_only_dicom(path: Path, sop_class: str, **attributes: Any) -> None:
    """A DICOM file of ``sop_class`` without pixels (a DICOMDIR, a dose report), with ``attributes``
    set on the dataset: for folders that hold such objects beside image series."""
    from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: PLC0415 - only the DICOM tests need it
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: PLC0415

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    for name, value in attributes.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)
