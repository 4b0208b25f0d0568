"""Dataset check and fingerprint: integrity of every pair, statistics, suggested settings.

Rules for the suggestions (simple, after nnU-Net's planning heuristics):

- target spacing: the median voxel size per axis; when the thickest axis is more than 3x the finest,
  its 10th percentile instead (so very thick slices do not dictate the grid);
- HU window: the 0.5th and 99.5th percentiles of foreground (label > 0) intensities;
- patch size: the median body-cropped shape at the target spacing, each side rounded down to a
  multiple of 16 (the network's total stride), between 32 and 160, and shrunk isotropically
  until the patch has at most 96^3 voxels.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from monai import transforms as mt

from attnunet.data.datalist import Case
from attnunet.data.transforms import IMAGE, LABEL, BodyMask, PreprocessingSpec, loading
from attnunet.errors import AttnUNetError, as_user_error
from attnunet.utils.atomic import write_text_atomically
from attnunet.utils.geometry import voxel_spacing

MAX_PATCH_VOXELS = 96**3
FOREGROUND_SAMPLES = 100_000


@dataclass
class Fingerprint:
    """Per-case statistics (one entry per readable case, in ``case_ids`` order) and the problems found."""

    case_ids: list[str] = field(default_factory=list)
    spacings: list[list[float]] = field(default_factory=list)
    shapes: list[list[int]] = field(default_factory=list)
    body_extents_mm: list[list[float]] = field(default_factory=list)
    foreground_hu: list[np.ndarray] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)

    def without(self, case_ids: Collection[str]) -> Fingerprint:
        """The statistics of the other cases (the problems stay)."""
        keep = [i for i, c in enumerate(self.case_ids) if c not in case_ids]
        per_case = {f.name: [getattr(self, f.name)[i] for i in keep] for f in fields(self) if f.name != "problems"}
        return Fingerprint(**per_case, problems=dict(self.problems))


@dataclass(frozen=True)
class LoadedCase:
    """One checked image/label pair in RAS voxel order: ``image`` ``(X, Y, Z)`` float32 HU,
    ``label`` ``(X, Y, Z)`` integer values, ``spacing`` ``(3,)`` mm."""

    image: np.ndarray
    label: np.ndarray
    spacing: np.ndarray


def load_pairs(cases: list[Case], num_labels: int) -> Iterator[tuple[str, LoadedCase | AttnUNetError]]:
    """Each case's id with its pair, read through the same checks as training, or the error that
    makes it unusable (the loop goes on with the other cases)."""
    keys = [IMAGE, LABEL]
    load = mt.Compose([*loading(keys, "RAS", num_labels), mt.SqueezeDimd(keys, dim=0)])
    for case in cases:
        case_id = case.get("case_id", case[IMAGE])
        try:
            data = load({IMAGE: case[IMAGE], LABEL: case[LABEL]})
        except Exception as e:  # noqa: BLE001 - every problem is reported, the check goes on
            yield case_id, as_user_error(e, case[IMAGE], "unreadable")
            continue
        image, label = np.asarray(data[IMAGE]), np.asarray(data[LABEL]).astype(np.uint8)
        yield case_id, LoadedCase(image, label, np.array(voxel_spacing(data[IMAGE].affine)))


def fingerprint_cases(
    cases: list[Case],
    num_labels: int,
    seed: int = 0,
    on_case: Callable[[str, LoadedCase], None] | None = None,
) -> Fingerprint:
    """Load every pair through the same checks as training; collect statistics of the good ones
    (spacings and shapes in RAS axis order, as ``data.preprocessing.spacing`` and ``data.patch_size`` are given).
    ``on_case`` sees every readable pair too (the audit), so each case is read once."""
    rng = np.random.default_rng(seed)
    fp = Fingerprint()
    for case_id, loaded in load_pairs(cases, num_labels):
        if isinstance(loaded, AttnUNetError):
            fp.problems[case_id] = str(loaded)
            continue
        if on_case is not None:
            on_case(case_id, loaded)
        image, label, spacing = loaded.image, loaded.label, loaded.spacing
        body = np.argwhere(BodyMask(PreprocessingSpec().body_threshold_hu)(image))
        extent = (body.max(0) - body.min(0) + 1) * spacing if len(body) else np.array(image.shape) * spacing
        values = image[label > 0]
        if len(values) > FOREGROUND_SAMPLES:
            values = rng.choice(values, FOREGROUND_SAMPLES, replace=False)
        fp.case_ids.append(case_id)
        fp.spacings.append(spacing.round(4).tolist())
        fp.shapes.append(list(image.shape))
        fp.body_extents_mm.append(extent.round(1).tolist())
        fp.foreground_hu.append(values.astype(np.float32))
    return fp


def suggest(fp: Fingerprint) -> dict[str, Any]:
    """Target spacing, HU window and patch size by the rules in the module docstring."""
    spacings = np.array(fp.spacings)
    target = np.median(spacings, 0)
    thick = int(np.argmax(target))
    if target[thick] > 3 * target.min():
        target[thick] = np.percentile(spacings[:, thick], 10)
    foreground = np.concatenate(fp.foreground_hu) if fp.foreground_hu else np.zeros(1)
    window = np.percentile(foreground, [0.5, 99.5])
    shape = np.median(np.array(fp.body_extents_mm), 0) / target
    patch = np.clip((shape // 16) * 16, 32, 160)
    while np.prod(patch) > MAX_PATCH_VOXELS and patch.max() > 32:
        patch[np.argmax(patch)] -= 16
    return {
        "spacing": [round(float(s), 3) for s in target],
        "intensity_window": [round(float(window[0]), 1), round(float(window[1]), 1)],
        "patch_size": [int(p) for p in patch],
    }


def settings_basis(fp: Fingerprint, left_out: Mapping[str, str]) -> Fingerprint:
    """The cases statistics and suggestions are computed from: all but those ``left_out`` (cases
    with audit findings); all of them when that would leave none."""
    clean = fp.without(left_out)
    return clean if clean.case_ids else fp


def report(fp: Fingerprint, left_out: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Statistics as plain data (for ``fingerprint.yaml``), over the cases not ``left_out``
    (``{case: why}``, see :func:`settings_basis`); which were left out, and why, is part of it."""
    left_out = dict(left_out or {})
    basis = settings_basis(fp, left_out)
    spacings, shapes = np.array(basis.spacings), np.array(basis.shapes)
    foreground = np.concatenate(basis.foreground_hu) if basis.foreground_hu else np.zeros(1)
    pct = [0.5, 5, 50, 95, 99.5]
    if basis is fp and left_out:
        left_out = {"(none)": "every case has a finding, so all of them count"}
    return {
        "cases_ok": len(fp.spacings),
        "cases_with_problems": len(fp.problems),
        "problems": dict(fp.problems),
        "statistics_from_cases": len(basis.case_ids),
        "left_out_of_statistics": {c: why for c, why in left_out.items() if c not in basis.case_ids},
        "spacing_mm": {
            k: np.round(f(spacings, 0), 3).tolist()
            for k, f in (("min", np.min), ("median", np.median), ("max", np.max))
        },
        "shape": {
            k: f(shapes, 0).astype(int).tolist() for k, f in (("min", np.min), ("median", np.median), ("max", np.max))
        },
        "foreground_hu_percentiles": {str(p): round(float(v), 1) for p, v in zip(pct, np.percentile(foreground, pct))},
    }


def write_override(suggestion: dict[str, Any], path: Path) -> None:
    """A Hydra experiment file: ``attnunet-train --config-dir <dir> experiment=fingerprint``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# @package _global_",
        "# Suggested by attnunet check (see attnunet/data/fingerprint.py for the rules).",
        "data:",
        f"  patch_size: {suggestion['patch_size']}",
        "  preprocessing:",
    ]
    lines += [f"    {key}: {value}" for key, value in suggestion.items() if key != "patch_size"]
    write_text_atomically(path, "\n".join(lines) + "\n")
