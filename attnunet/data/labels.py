"""Label maps and label merging (e.g. MSD's tumour counted as pancreas for the paper's binary task)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from attnunet.errors import AttnUNetError

LabelNames = dict[int, str]


def check_label_names(names: Mapping[int, str], source: object = "dataset") -> LabelNames:
    """``{0: 'background', 1: 'pancreas', ...}`` sorted; values must be 0..K-1 without gaps, K >= 2."""
    names = dict(sorted((int(k), str(v)) for k, v in names.items()))
    if sorted(names) != list(range(len(names))) or len(names) < 2:
        raise AttnUNetError(f"labels must be 0..K-1 with K >= 2, got {sorted(names)}", str(source))
    return names


def merge_labels(names: LabelNames, merge: Mapping[int, int] | None) -> tuple[LabelNames, dict[int, int]]:
    """Label map after merging classes, and the value lookup from old to new values.

    ``merge`` maps a source value to the value it is counted as, e.g. ``{2: 1}`` (tumour -> pancreas).
    The remaining values are renumbered to stay contiguous, keeping their order and names.

    >>> merge_labels({0: "background", 1: "pancreas", 2: "tumour"}, {2: 1})
    ({0: 'background', 1: 'pancreas'}, {0: 0, 1: 1, 2: 1})
    """
    merge = {int(k): int(v) for k, v in (merge or {}).items()}
    for source, target in merge.items():
        if source not in names or target not in names or source == 0:
            raise AttnUNetError(
                f"merge_labels {source} -> {target}: both must be labels of the map {sorted(names)} "
                "and background (0) cannot be merged away"
            )
        if target in merge:
            raise AttnUNetError(f"merge_labels: {source} -> {target}, but {target} is merged itself")
    kept = [k for k in names if k not in merge]
    renumber = {old: new for new, old in enumerate(kept)}
    lookup = {old: renumber[merge.get(old, old)] for old in names}
    return {renumber[k]: names[k] for k in kept}, lookup


def apply_lookup(array: np.ndarray, lookup: Mapping[int, int]) -> np.ndarray:
    """Relabel an integer label volume ``(X, Y, Z)`` with ``lookup`` (values not in it are kept)."""
    if all(k == v for k, v in lookup.items()):
        return array
    out = array.copy()
    for old, new in lookup.items():
        if old != new:
            out[array == old] = new
    return out


def lookup_by_name(model: LabelNames, dataset: LabelNames, source: object = "checkpoint") -> dict[int, int]:
    """Value lookup from a model's label map to a dataset's, matching classes by name.

    Lets a model with more classes than a dataset be scored on it (e.g. pancreas plus organs
    against pancreas-only references): each model class the dataset names maps to the dataset's
    value, every other class to background (0). Refused when the dataset names a class the model
    lacks or background is not 0 in both.

    >>> lookup_by_name({0: "background", 1: "pancreas", 2: "liver"}, {0: "background", 1: "pancreas"})
    {0: 0, 1: 1, 2: 0}
    """
    value_of = {name: value for value, name in model.items()}
    missing = [name for value, name in dataset.items() if value != 0 and name not in value_of]
    if missing or model.get(0) != dataset.get(0):
        raise AttnUNetError(
            f"checkpoint label map {model} differs from the dataset's {dataset}: "
            + (f"the model has no class {missing}" if missing else "background is not label 0 in both"),
            str(source),
        )
    dataset_value = {name: value for value, name in dataset.items()}
    return {value: dataset_value.get(name, 0) for value, name in model.items()}
