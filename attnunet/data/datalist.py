"""Case lists from an MSD-style ``dataset.json``, with integrity checks and a deterministic split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import load_decathlon_datalist

from attnunet.data.labels import check_label_names
from attnunet.errors import AttnUNetError
from attnunet.io.naming import NIFTI_SUFFIXES, case_names, require_unique

Case = dict[str, str]


def read_dataset_json(path: str | Path) -> dict[str, Any]:
    """Parse ``dataset.json``; a clean error names the file when it is missing or malformed."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise AttnUNetError("dataset.json not found", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AttnUNetError(f"not valid JSON ({e})", path) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("labels"), dict):
        raise AttnUNetError("expected an object with a 'labels' map", path)
    return meta


def label_names(meta: dict[str, Any], path: str | Path = "dataset.json") -> dict[int, str]:
    """Label map ``{0: 'background', 1: 'pancreas', ...}``; values must be 0..K-1 without gaps."""
    try:
        names = {int(k): str(v) for k, v in meta["labels"].items()}
    except (TypeError, ValueError):
        raise AttnUNetError("label keys must be integers", path) from None
    return check_label_names(names, path)


def load_cases(dataset_json: str | Path, key: str = "training", require_label: bool = True) -> list[Case]:
    """Cases of one list of ``dataset.json`` with absolute paths; every listed file must exist."""
    dataset_json = Path(dataset_json)
    meta = read_dataset_json(dataset_json)
    if not meta.get(key):
        raise AttnUNetError(f"no cases in '{key}'", dataset_json)
    try:
        cases = load_decathlon_datalist(dataset_json, is_segmentation=require_label, data_list_key=key)
    except (KeyError, TypeError, ValueError) as e:
        raise AttnUNetError(f"malformed '{key}' list ({e})", dataset_json) from None
    for case in cases:
        for field in ("image", "label") if require_label else ("image",):
            if field not in case:
                raise AttnUNetError(f"a '{key}' entry has no '{field}'", dataset_json)
    # Named as listed (nnU-Net v1 lists <case>.nii.gz but stores <case>_0000.nii.gz).
    for case, name in zip(cases, case_names([c["image"] for c in cases])):
        case["case_id"] = name
        case["image"] = _nnunet_v1_channel(case["image"])
        for field in ("image", "label") if require_label else ("image",):
            if not Path(case[field]).is_file():
                raise AttnUNetError(f"{field} listed in {dataset_json.name} does not exist", case[field])
    require_unique([c["case_id"] for c in cases], dataset_json)
    return cases


def _nnunet_v1_channel(image: str) -> str:
    """nnU-Net v1 lists ``imagesTr/<case>.nii.gz`` but stores ``imagesTr/<case>_0000.nii.gz``."""
    path = Path(image)
    if path.exists():
        return image
    for ext in NIFTI_SUFFIXES:
        if path.name.endswith(ext):
            channel = path.with_name(path.name[: -len(ext)] + "_0000" + ext)
            return str(channel) if channel.exists() else image
    return image


def split_cases(cases: list[Case], val_fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Deterministic shuffle by ``seed``; at least one case on each side when there are two or more."""
    if not 0 < val_fraction < 1:
        raise AttnUNetError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if len(cases) < 2:
        raise AttnUNetError(f"need at least 2 cases to split into train and validation, got {len(cases)}")
    order = np.random.default_rng(seed).permutation(len(cases))
    n_val = min(max(1, round(val_fraction * len(cases))), len(cases) - 1)
    val = [cases[i] for i in sorted(order[:n_val])]
    train = [cases[i] for i in sorted(order[n_val:])]
    return train, val


def kfold_splits(cases: list[Case], folds: int, seed: int) -> list[dict[str, list[str]]]:
    """Deterministic k-fold cross-validation: ``[{"train": [case ids], "val": [case ids]}, ...]``."""
    if not 2 <= folds <= len(cases):
        raise AttnUNetError(f"folds must lie in 2..{len(cases)} (the number of cases), got {folds}")
    ids = [c["case_id"] for c in cases]
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    parts = [sorted(order[k::folds]) for k in range(folds)]
    return [{"train": sorted(set(ids) - set(part)), "val": part} for part in parts]


def read_splits(path: Path) -> list[dict[str, list[str]]]:
    """A splits file: ``[{"train": [case ids], "val": [case ids]}, ...]`` (one entry per fold)."""
    try:
        folds = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AttnUNetError(f"not valid JSON ({e})", path) from None
    well_formed = isinstance(folds, list) and all(
        isinstance(f, dict) and all(isinstance(f.get(k), list) for k in ("train", "val")) for f in folds
    )
    if not well_formed or not folds:
        raise AttnUNetError('expected a list of {"train": [case ids], "val": [case ids]} folds', path)
    return folds


def apply_split(cases: list[Case], split: dict[str, list[str]], source: str | Path) -> tuple[list[Case], list[Case]]:
    """Cases of a ``{"train": [...], "val": [...]}`` split; every listed id must exist, and no case
    may be on both sides (it would be scored on data it was trained on)."""
    both = sorted(set(split["train"]) & set(split["val"]))
    if both:
        raise AttnUNetError(f"{len(both)} cases are in both train and val, e.g. {both[:5]}", source)
    if not split["val"]:
        raise AttnUNetError("the split has no validation cases", source)
    by_id = {c["case_id"]: c for c in cases}
    missing = sorted((set(split["train"]) | set(split["val"])) - set(by_id))
    if missing:
        raise AttnUNetError(f"split lists unknown cases {missing[:5]}", source)
    return [by_id[i] for i in split["train"]], [by_id[i] for i in split["val"]]
