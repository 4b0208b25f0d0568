"""Is a label where a pancreas can be? Its fit to the CT as stored, against the same label flipped
or transposed.

A label stored mirrored against its CT (several re-releases of NIH Pancreas-CT need a flip along one
axis) trains the network on the wrong voxels and drags the suggested HU window towards bone. No
model is needed to see it; every label placement (as stored, flipped along each axis, transposed
where two axes have the same length) is scored by evidence that needs only HU and landmarks
(:mod:`attnunet.data.body_landmarks`), each term a penalty in units (0: fits):

- ``hu``: share of voxels in bone (> 300 HU), in air (< -400 HU) or outside the body; a pancreas
  holds almost none, a label mirrored onto the spine or the lung many;
- ``anterior``: the pancreas lies in front of the spine, with the vertebral body and the aorta
  between, and behind the bowel: its centre :data:`MIN_ANTERIOR_MM` to :data:`MAX_ANTERIOR_MM`
  in front of the spine's bone centre (a label mirrored into the pelvis lies farther: the sacrum
  curves back);
- ``reach``: its tail reaches farther left of the spine than its head reaches right;
- ``slope``: its tail lies higher than its head (z falls as x grows, in RAS);
- ``shape``: it is longest from left to right (a transposed label stands on end);
- ``consensus``: with :data:`MIN_CONSENSUS` or more other cases, features far (robust z-score > 3)
  from the dataset's median of the labels as stored.

A placement other than the stored one is reported when it lowers the penalty by at least
:data:`REPORT_MARGIN` units and to at most half of the stored one. Position and shape terms apply
to the pancreas and its lesions (the labels named so); other labels count towards ``hu`` only.
A plain HU test cannot see every flip (a real label mirrored front to back can keep a soft-tissue
median), hence the position terms; ``reach`` or ``slope`` alone (at most 1 unit each) never reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import numpy as np

from attnunet.data.body_landmarks import BodyLandmarks
from attnunet.data.findings import ERROR, Finding

AXES = ("x (R-L)", "y (A-P)", "z (S-I)")
AS_STORED = "as stored"
BONE_HU, AIR_HU = 300.0, -400.0
MIN_ANTERIOR_MM, MAX_ANTERIOR_MM = 45.0, 120.0
MIN_ELONGATION = 1.2  # left-right extent over the larger of the other two (adults: about 1.5-2.7)
MAX_VOXELS = 40_000  # label voxels sampled per placement: the shares and centres need no more
MIN_CONSENSUS = 4
REPORT_MARGIN = 1.5
# Labels whose position the pancreas priors describe: the organ and what lies inside it.
PANCREATIC = re.compile(r"pancrea|tumou?r|lesion|cyst|mass|cancer|neoplasm|pdac|ipmn", re.IGNORECASE)
# Robust z-scores below these spreads are not trusted (a few near-identical cases).
CONSENSUS_FLOOR = {"hu_median": 25.0, "anterior_mm": 12.0, "reach_mm": 20.0, "slope": 0.15}

Placement = dict[str, float]
Voxels = np.ndarray  # (N, 3) int voxel indices, RAS order


def placements(shape: tuple[int, ...]) -> dict[str, Callable[[Voxels], Voxels]]:
    """Every placement tried for a label on a grid of ``shape``: the voxel map of each.

    Flips are the same along a stored axis and along the RAS axis it becomes. A transpose in the
    stored order is, in RAS order, a transpose or a transpose with both axes mirrored (when
    exactly one of the two stored axes runs against RAS), so both are tried.
    """
    n = np.asarray(shape[:3])
    maps: dict[str, Callable[[Voxels], Voxels]] = {AS_STORED: lambda v: v}
    for a in range(3):
        maps[f"flipped along {AXES[a]}"] = lambda v, a=a: _flip(v, n, (a,))
    for a, b in ((0, 1), (0, 2), (1, 2)):
        if n[a] == n[b]:
            names = f"{AXES[a].split()[0]} and {AXES[b].split()[0]}"
            maps[f"transposed ({names} swapped)"] = lambda v, a=a, b=b: _swap(v, a, b)
            maps[f"transposed and mirrored ({names} swapped)"] = lambda v, a=a, b=b: _flip(_swap(v, a, b), n, (a, b))
    return maps


def _flip(v: Voxels, n: np.ndarray, axes: tuple[int, ...]) -> Voxels:
    out = v.copy()
    for a in axes:
        out[:, a] = n[a] - 1 - out[:, a]
    return out


def _swap(v: Voxels, a: int, b: int) -> Voxels:
    out = v.copy()
    out[:, [a, b]] = out[:, [b, a]]
    return out


def pancreatic_labels(names: Mapping[int, str]) -> list[int]:
    """Label values the pancreas priors apply to (named pancreas, tumour, lesion, ...); none when
    no foreground name says so."""
    return [k for k, v in names.items() if k > 0 and PANCREATIC.search(v)]


def foreground_box(label: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The bounding box of the voxels above 0 of ``(X, Y, Z)`` ``label``; None when there are none.
    Work within it: finding the voxels of a whole full-size CT takes half a second per pass."""
    box = []
    for axis in range(3):
        hit = np.flatnonzero(label.any(axis=tuple(a for a in range(3) if a != axis)))
        if len(hit) == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return box[0], box[1], box[2]


def measure(image: np.ndarray, label: np.ndarray, landmarks: BodyLandmarks, organ: list[int]) -> dict[str, Placement]:
    """Features of every placement of ``label`` on ``image`` (both ``(X, Y, Z)``, RAS, image in HU).

    ``organ``: label values the position priors apply to. Returns ``{placement: features}`` with
    ``bone``, ``air``, ``outside`` (shares of voxels), ``hu_median`` over all foreground, and, for
    the ``organ`` voxels, ``anterior_mm``, ``reach_mm`` and ``slope`` (NaN without them or without
    a spine). Empty for an empty label.
    """
    box = foreground_box(label)
    if box is None:
        return {}
    voxels = np.argwhere(label[box] > 0) + [b.start for b in box]
    if len(voxels) > MAX_VOXELS:  # evenly spaced in storage order: deterministic, spread over the label
        voxels = voxels[np.linspace(0, len(voxels) - 1, MAX_VOXELS).astype(int)]
    in_organ = np.isin(label[voxels[:, 0], voxels[:, 1], voxels[:, 2]], organ)
    return {
        name: _features(place(voxels), in_organ, image, landmarks) for name, place in placements(image.shape).items()
    }


def _features(voxels: Voxels, in_organ: np.ndarray, image: np.ndarray, landmarks: BodyLandmarks) -> Placement:
    inside_grid = np.all((voxels >= 0) & (voxels < np.array(image.shape)), axis=1)
    voxels, in_organ = voxels[inside_grid], in_organ[inside_grid]
    hu = image[voxels[:, 0], voxels[:, 1], voxels[:, 2]]
    features = {
        "bone": float(np.mean(hu > BONE_HU)),
        "air": float(np.mean(hu < AIR_HU)),
        "outside": float(np.mean(~landmarks.inside_body(voxels))),
        "spine": float(np.mean(landmarks.on_spine(voxels))),
        "hu_median": float(np.median(hu)),
        "anterior_mm": np.nan,
        "reach_mm": np.nan,
        "slope": np.nan,
        "elongation": np.nan,
    }
    organ = voxels[in_organ]
    spine = landmarks.spine_at(organ[:, 2]) if len(organ) else None
    if spine is None:
        return features
    mm = organ * landmarks.spacing
    features["anterior_mm"] = float(landmarks.anterior * (mm[:, 1].mean() - spine[1]))
    low, high = np.percentile(mm, [2, 98], axis=0)
    extent = high - low
    features["elongation"] = float(extent[0] / max(extent[1], extent[2], 1e-6))
    left, right = low[0], high[0]
    features["reach_mm"] = float((spine[0] - left) - (right - spine[0]))
    if np.ptp(mm[:, 0]) > 0:
        features["slope"] = float(np.cov(mm[:, 0], mm[:, 2])[0, 1] / np.var(mm[:, 0], ddof=1))
    return features


def penalty(features: Placement, consensus: Placement | None = None) -> dict[str, float]:
    """Penalty units per term (see the module docstring) of one placement."""
    wrong_tissue = max(features["bone"], features["spine"]) + max(features["air"], features["outside"])
    terms = {"hu": min(3.0, 8.0 * wrong_tissue)}
    if not np.isnan(features["anterior_mm"]):
        too_far = max(0.0, features["anterior_mm"] - MAX_ANTERIOR_MM) / 15.0
        terms["anterior"] = min(2.0, max(0.0, MIN_ANTERIOR_MM - features["anterior_mm"]) / 12.0 + too_far)
        terms["reach"] = min(1.0, max(0.0, -features["reach_mm"] - 20.0) / 30.0)
        terms["shape"] = min(2.0, max(0.0, MIN_ELONGATION - features["elongation"]) / 0.3)
    if not np.isnan(features["slope"]):
        terms["slope"] = min(1.0, max(0.0, features["slope"] - 0.05) / 0.25)
    if consensus:
        terms["consensus"] = sum(
            min(1.0, max(0.0, abs(features[k] - consensus[k]) / consensus[f"{k}_spread"] - 3.0) / 2.0)
            for k in CONSENSUS_FLOOR
            if not np.isnan(features[k]) and not np.isnan(consensus[k])
        )
    return terms


def consensus_of(stored: list[Placement]) -> Placement | None:
    """Median and robust spread (1.4826 MAD, at least the floor) of each feature over the labels
    as stored; None with fewer than :data:`MIN_CONSENSUS` cases."""
    if len(stored) < MIN_CONSENSUS:
        return None
    out: Placement = {}
    for key, floor in CONSENSUS_FLOOR.items():
        values = np.array([s[key] for s in stored if not np.isnan(s[key])])
        if len(values) < MIN_CONSENSUS:
            out[key], out[f"{key}_spread"] = np.nan, floor
            continue
        out[key] = float(np.median(values))
        out[f"{key}_spread"] = max(floor, 1.4826 * float(np.median(np.abs(values - out[key]))))
    return out


def alignment_findings(measured: Mapping[str, dict[str, Placement]]) -> list[Finding]:
    """An error per case whose label fits clearly better flipped or transposed.

    ``measured``: ``{case: measure(...)}`` of every case of the dataset (each case is compared with
    the consensus of the others).
    """
    findings = []
    for case, options in measured.items():
        if AS_STORED not in options:
            continue
        others = [m[AS_STORED] for c, m in measured.items() if c != case and AS_STORED in m]
        consensus = consensus_of(others)
        totals = {name: sum(penalty(f, consensus).values()) for name, f in options.items()}
        stored = totals.pop(AS_STORED)
        ranked = sorted(totals, key=totals.__getitem__)
        if not ranked:
            continue
        best = ranked[0]
        if stored - totals[best] < REPORT_MARGIN or totals[best] > stored / 2:
            continue
        close = [n for n in ranked[1:] if totals[n] - totals[best] < 0.5 and stored - totals[n] >= REPORT_MARGIN]
        how = " or ".join([best, *close[:1]])
        findings.append(
            Finding(
                case,
                ERROR,
                "label_misaligned",
                f"label fits the image far better {how}: was it stored "
                f"{'mirrored' if best.startswith('flipped') else 'transposed'}? (as stored: "
                f"{_reasons(options[AS_STORED])}; penalty {stored:.1f} -> {totals[best]:.1f})",
            )
        )
    return findings


def _reasons(stored: Placement) -> str:
    """What is wrong with the label as stored, in words."""
    words = []
    if max(stored["bone"], stored["spine"]) > 0.02:
        words.append(f"{max(stored['bone'], stored['spine']):.0%} of it on bone or the spine")
    if max(stored["air"], stored["outside"]) > 0.02:
        words.append(f"{max(stored['air'], stored['outside']):.0%} on air or outside the body")
    if not np.isnan(stored["anterior_mm"]) and not MIN_ANTERIOR_MM <= stored["anterior_mm"] <= MAX_ANTERIOR_MM:
        words.append(f"centre {stored['anterior_mm']:.0f} mm in front of the spine")
    if not np.isnan(stored["reach_mm"]) and stored["reach_mm"] < -20:
        words.append(f"reaches {-stored['reach_mm']:.0f} mm farther right than left")
    if not np.isnan(stored["elongation"]) and stored["elongation"] < MIN_ELONGATION:
        words.append("longer front to back or top to bottom than left to right")
    if not np.isnan(stored["slope"]) and stored["slope"] > 0.05:
        words.append("lower on the left")
    return ", ".join(words) or "far from the other cases"
