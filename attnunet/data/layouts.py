"""Case lists from the folder layouts users have: MSD, nnU-Net raw, image/label folders, NIH Pancreas-CT.

Every layout ends as a :class:`CaseList` (image/label paths, case ids and the label map), which
the datamodule, ``attnunet-check`` and ``attnunet-evaluate`` use the same way. Images may be NIfTI
files or DICOM series folders (MONAI's loader reads both).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from attnunet.data import datalist
from attnunet.data.datalist import Case, load_cases, read_dataset_json
from attnunet.data.labels import LabelNames, check_label_names
from attnunet.errors import AttnUNetError
from attnunet.io.dicom import dicom_series_dirs
from attnunet.io.naming import NIFTI_SUFFIXES, case_names, is_nifti, require_unique, stem

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "msd", "nnunet", "folder", "nih")
NIH_PATIENT = re.compile(r"PANCREAS_(\d+)$", re.IGNORECASE)
NIH_LABEL = re.compile(r"label(\d+)\.nii(\.gz)?$", re.IGNORECASE)
DEFAULT_LABELS: LabelNames = {0: "background", 1: "pancreas"}


@dataclass(frozen=True)
class CaseList:
    """The labelled cases of a dataset.

    Attributes:
        cases: ``{"image": path, "label": path, "case_id": name}`` per case, paths absolute.
        labels: label map ``{0: 'background', 1: ..., K-1: ...}``.
        source: the file or folder the list was read from (named in errors).
    """

    cases: list[Case]
    labels: LabelNames
    source: Path


def discover(
    layout: str,
    root: Path,
    dataset_json: str = "dataset.json",
    image_dir: str = "imagesTr",
    label_dir: str = "labelsTr",
    label_names: Mapping[int, str] | None = None,
) -> CaseList:
    """Read the cases of ``root`` in ``layout``.

    Args:
        layout: ``msd`` (``dataset.json`` with a ``training`` list; also nnU-Net v1), ``nnunet``
            (nnU-Net v2 raw: ``dataset.json`` label names to values, ``imagesTr/<case>_0000``,
            ``labelsTr/<case>``), ``folder`` (NIfTI images and labels paired by name), ``nih``
            (NIH Pancreas-CT: ``PANCREAS_NNNN`` DICOM folders and ``labelNNNN.nii.gz``) or ``auto``
            (``msd`` or ``nnunet`` by the content of ``dataset.json``, else ``folder``).
        root: dataset folder.
        dataset_json: case list file name (or absolute path) for ``msd``/``nnunet``.
        image_dir, label_dir: image and label folders (relative to ``root`` or absolute) for
            ``folder``, ``nnunet`` and ``nih``.
        label_names: label map for ``folder`` and ``nih`` (default background/pancreas).
    """
    if layout not in LAYOUTS:
        raise AttnUNetError(f"data.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    json_path = root / dataset_json
    if layout == "auto":
        layout = _detect(root, json_path)
        log.info("Dataset layout of %s: %s", root, layout)
    if layout == "msd":
        meta = read_dataset_json(json_path)
        return CaseList(load_cases(json_path), datalist.label_names(meta, json_path), json_path)
    if layout == "nnunet":
        return _nnunet(json_path, root / image_dir, root / label_dir)
    names = check_label_names(label_names or DEFAULT_LABELS, root)
    if layout == "folder":
        return _folder(root / image_dir, root / label_dir, names)
    return _nih(root / image_dir, root / label_dir, names)


def _detect(root: Path, json_path: Path) -> str:
    if not root.is_dir():
        raise AttnUNetError("dataset folder does not exist", root)
    if json_path.is_file():
        meta = read_dataset_json(json_path)
        return "msd" if meta.get("training") else "nnunet"
    return "folder"


def _nnunet(json_path: Path, image_dir: Path, label_dir: Path) -> CaseList:
    """nnU-Net v2 raw dataset: single-channel images ``<case>_0000<ending>`` with ``<case><ending>`` labels."""
    meta = read_dataset_json(json_path)
    channels = meta.get("channel_names") or meta.get("modality") or {"0": "CT"}
    if len(channels) != 1:
        raise AttnUNetError(f"only single-channel (CT) datasets are supported, got channels {channels}", json_path)
    try:
        names = {int(v): str(k) for k, v in meta["labels"].items()}
    except (TypeError, ValueError):
        raise AttnUNetError(
            "nnU-Net labels must map names to single integers (regions are not supported)", json_path
        ) from None
    ending = str(meta.get("file_ending", ".nii.gz"))
    if ending not in NIFTI_SUFFIXES:
        raise AttnUNetError(f"file_ending {ending!r} is not supported; use NIfTI (.nii.gz or .nii)", json_path)
    cases = []
    for image in _files(image_dir, f"*_0000{ending}"):
        name = image.name[: -len(f"_0000{ending}")]
        if (image_dir / f"{name}_0001{ending}").exists():
            raise AttnUNetError("case has several channels; only single-channel CT is supported", image)
        label = label_dir / f"{name}{ending}"
        if not label.is_file():
            raise AttnUNetError(f"no label {label.name} for this image in {label_dir}", image)
        cases.append({"image": str(image), "label": str(label), "case_id": name})
    if not cases:
        raise AttnUNetError(f"no <case>_0000{ending} images", image_dir)
    if meta.get("numTraining") not in (None, len(cases)):
        log.warning("%s: numTraining is %s but %d cases were found", json_path, meta["numTraining"], len(cases))
    return CaseList(cases, check_label_names(names, json_path), json_path)


def _folder(image_dir: Path, label_dir: Path, labels: LabelNames) -> CaseList:
    """NIfTI images paired with the label of the same case name (an nnU-Net ``_0000`` channel suffix,
    carried by every image of the folder, is not part of the name)."""
    label_files = {stem(p): p for p in _files(label_dir, "*") if is_nifti(p)}
    images = [p for p in _files(image_dir, "*") if is_nifti(p)]
    cases, unlabelled = [], []
    for image, name in zip(images, case_names(images)):
        if name in label_files:
            cases.append({"image": str(image), "label": str(label_files[name]), "case_id": name})
        else:
            unlabelled.append(name)
    return _checked(cases, unlabelled, labels, image_dir)


def _nih(image_root: Path, label_dir: Path, labels: LabelNames) -> CaseList:
    """NIH Pancreas-CT as TCIA distributes it: ``.../PANCREAS_0001/<study>/<series>/*.dcm`` and
    ``label0001.nii.gz``; patient and label are matched by number."""
    if not image_root.is_dir():
        raise AttnUNetError("folder does not exist", image_root)
    label_files = {int(m.group(1)): p for p in _files(label_dir, "*") if (m := NIH_LABEL.search(p.name))}
    patients = sorted(p for p in [image_root, *image_root.rglob("*")] if p.is_dir() and NIH_PATIENT.search(p.name))
    if not patients:
        raise AttnUNetError("no PANCREAS_NNNN patient folders", image_root)
    cases, unlabelled = [], []
    for patient in patients:
        number = int(NIH_PATIENT.search(patient.name).group(1))  # type: ignore[union-attr]
        if number not in label_files:
            unlabelled.append(patient.name)
            continue
        series = dicom_series_dirs(patient)
        if len(series) != 1:
            raise AttnUNetError(f"expected one DICOM series below the patient folder, found {len(series)}", patient)
        cases.append({"image": str(series[0]), "label": str(label_files[number]), "case_id": patient.name})
    return _checked(cases, unlabelled, labels, image_root)


def _checked(cases: list[Case], unlabelled: list[str], labels: LabelNames, source: Path) -> CaseList:
    if unlabelled:
        log.warning("%s: %d images without a label are left out, e.g. %s", source, len(unlabelled), unlabelled[:3])
    if not cases:
        raise AttnUNetError("no image with a matching label", source)
    require_unique([c["case_id"] for c in cases], source)
    return CaseList(cases, labels, source)


def _files(folder: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` in ``folder``, without hidden ones (macOS ``._*`` copies in the MSD tar)."""
    if not folder.is_dir():
        raise AttnUNetError("folder does not exist", folder)
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))
