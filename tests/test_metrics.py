"""Metric values against geometry computed by hand (spheres in mm, anisotropic voxels)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnunet.evaluation.metrics import score_case, summarise
from attnunet.utils.geometry import bounding_box, voxel_spacing

SPACING = (1.0, 1.0, 2.0)
LABELS = {0: "background", 1: "organ"}


def sphere(radius_mm: float, shape=(48, 48, 24), centre_mm=(24.0, 24.0, 24.0)) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, SPACING, strict=True)], indexing="ij")
    return (sum((g - c) ** 2 for g, c in zip(grid, centre_mm, strict=True)) <= radius_mm**2).astype(np.uint8)


def test_concentric_spheres() -> None:
    small, big = sphere(10), sphere(12)
    (row,) = score_case(small, big, SPACING, LABELS, nsd_tolerance_mm=3.0)
    v_small, v_big = 4 / 3 * math.pi * 10**3, 4 / 3 * math.pi * 12**3
    assert row["dice"] == pytest.approx(2 * v_small / (v_small + v_big), abs=0.03)
    assert row["precision"] == pytest.approx(1.0)
    assert row["recall"] == pytest.approx(v_small / v_big, abs=0.03)
    assert row["ref_ml"] == pytest.approx(v_big / 1000, rel=0.04)
    assert row["pred_ml"] == pytest.approx(v_small / 1000, rel=0.05)
    assert 1.0 <= row["hd95_mm"] <= 3.0  # every surface point is about 2 mm from the other surface
    assert row["nsd"] > 0.95
    (strict,) = score_case(small, big, SPACING, LABELS, nsd_tolerance_mm=0.5)
    assert strict["nsd"] < 0.3


def test_hd95_is_in_millimetres_along_the_thick_axis() -> None:
    ref = np.zeros((20, 20, 20), np.uint8)
    ref[5:15, 5:15, 5:10] = 1
    pred = np.zeros_like(ref)
    pred[5:15, 5:15, 8:13] = 1  # shifted 3 voxels = 6 mm along z
    (row,) = score_case(pred, ref, SPACING, LABELS)
    assert row["hd95_mm"] == pytest.approx(6.0)
    assert row["dice"] == pytest.approx(0.4)


def test_empty_conventions() -> None:
    empty, blob = np.zeros((10, 10, 10), np.uint8), np.zeros((10, 10, 10), np.uint8)
    blob[2:5, 2:5, 2:5] = 1
    diagonal = math.dist((0, 0, 0), (10 * 1.0, 10 * 1.0, 10 * 2.0))
    (both,) = score_case(empty, empty, SPACING, LABELS)
    assert (both["dice"], both["nsd"], both["hd95_mm"]) == (1.0, 1.0, 0.0)
    assert math.isnan(both["precision"]) and math.isnan(both["recall"])
    (missed,) = score_case(empty, blob, SPACING, LABELS)
    assert (missed["dice"], missed["nsd"], missed["recall"]) == (0.0, 0.0, 0.0)
    assert missed["hd95_mm"] == pytest.approx(diagonal) and math.isnan(missed["precision"])
    (hallucinated,) = score_case(blob, empty, SPACING, LABELS)
    assert (hallucinated["dice"], hallucinated["precision"]) == (0.0, 0.0)
    assert math.isnan(hallucinated["recall"])


def test_multi_label_rows_and_summary() -> None:
    ref = np.zeros((16, 16, 8), np.uint8)
    ref[2:8, 2:8, 2:6] = 1
    ref[10:14, 10:14, 2:6] = 2
    labels = {0: "background", 1: "pancreas", 2: "lesion"}
    rows = [{"case": "a", **r} for r in score_case(ref, ref, SPACING, labels)]
    rows += [{"case": "b", **r} for r in score_case(np.where(ref == 2, 0, ref), ref, SPACING, labels)]
    assert [r["label"] for r in rows] == ["pancreas", "lesion", "pancreas", "lesion"]
    summary = summarise(rows)
    assert summary["pancreas"]["dice"]["mean"] == pytest.approx(1.0)
    assert summary["lesion"]["dice"]["mean"] == pytest.approx(0.5)
    assert summary["lesion"]["dice"]["median"] == pytest.approx(0.5)
    assert summary["lesion"]["precision"]["n"] == 1  # undefined for the missed lesion


def test_voxel_spacing_from_rotated_affine() -> None:
    theta = math.radians(30)
    rot = np.array([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, 0.8, 2.5])
    assert voxel_spacing(affine) == pytest.approx((0.8, 0.8, 2.5))


def test_bounding_box_grows_by_the_margin_within_the_array() -> None:
    mask = np.zeros((6, 7, 8), dtype=bool)
    mask[0, 3, 5:7] = True
    assert bounding_box(mask) == (slice(0, 1), slice(3, 4), slice(5, 7))
    assert bounding_box(mask, margin=2) == (slice(0, 3), slice(1, 6), slice(3, 8))
    assert bounding_box(np.zeros((3, 3), dtype=bool)) is None
