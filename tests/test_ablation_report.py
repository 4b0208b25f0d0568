"""The ablation report's statistics and gate figures: paired intervals, attention contrast, text, picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attnunet.evaluation.ablation import paired_to_reference, summarise_variants
from attnunet.evaluation.ablation_text import markdown
from attnunet.evaluation.attention_contrast import BODY_HU, contrast_columns, gate_means
from attnunet.evaluation.paired import paired_difference
from attnunet.evaluation.report import LabelMap
from attnunet.inference.predictor import ALPHA_STEPS, Prediction
from attnunet.inference.preview import render_preview
from attnunet.utils import overlays

SHAPE = (12, 10, 8)


def test_a_consistent_gain_is_resolved_and_its_mean_is_the_table_mean() -> None:
    rng = np.random.default_rng(1)
    table = 0.05 + rng.normal(0, 0.01, size=(3, 6))
    d = paired_difference(table)
    assert d.mean == pytest.approx(table.mean())
    assert 0 < d.low < d.mean < d.high
    assert d.resolved
    assert paired_difference(table) == d  # fixed bootstrap seed: reproducible


def test_noise_around_zero_is_not_resolved_and_nan_cells_are_left_out() -> None:
    rng = np.random.default_rng(2)
    table = rng.normal(0, 0.05, size=(3, 6))
    table -= table.mean()
    d = paired_difference(table)
    assert d.low < 0 < d.high and not d.resolved
    with_nan = table.copy()
    with_nan[0, 0] = np.nan
    assert np.isfinite(paired_difference(with_nan).mean)
    assert np.isnan(paired_difference(np.full((2, 3), np.nan)).mean)


def test_one_lucky_seed_widens_the_interval() -> None:
    """Seeds are redrawn too: a gain carried by one seed alone gives a wider interval than the
    same mean gain spread over every seed."""
    spread = np.full((3, 6), 0.02)
    one_seed = np.zeros((3, 6))
    one_seed[0] = 0.06
    wide, narrow = paired_difference(one_seed), paired_difference(spread)
    assert wide.mean == pytest.approx(narrow.mean)
    assert (wide.high - wide.low) > 5 * (narrow.high - narrow.low)
    assert not wide.resolved or wide.low < narrow.low


def _run(variant: str, seed: int, dice: list[float], gates: dict | None = None) -> dict:
    cases = {
        f"case{i}/pancreas": {"dice": d, "recall": d, "precision": d, "hd95_mm": 10 - 10 * d}
        for i, d in enumerate(dice)
    }
    return {
        "variant": variant,
        "seed": seed,
        "parameters": 1_000_000,
        "seconds_per_epoch": 1.0,
        **{m: float(np.mean([c[m] for c in cases.values()])) for m in ("dice", "recall", "precision", "hd95_mm")},
        "cases": cases,
        "attention_val": gates or {},
    }


def test_paired_to_the_unet_pairs_by_seed_and_case() -> None:
    base = [0.5, 0.6, 0.7, 0.4]
    runs = [_run("unet", s, [b + 0.01 * s for b in base]) for s in (1, 2, 3)]
    runs += [_run("attention_unet", s, [b + 0.01 * s + 0.05 for b in base]) for s in (1, 2, 3)]
    runs.append(_run("attention_unet", 4, [0.0] * 4))  # no U-Net with seed 4: not paired
    (row,) = paired_to_reference(runs)
    assert row["variant"] == "attention_unet" and row["seeds"] == [1, 2, 3] and row["cases"] == 4
    assert row["dice"].mean == pytest.approx(0.05)
    assert row["dice"].resolved and row["hd95_mm"].mean == pytest.approx(-0.5)
    assert paired_to_reference([r for r in runs if r["variant"] != "unet"]) == []


def test_report_text_marks_what_is_resolved_and_what_is_not() -> None:
    gates = {"level1": {"organ": 0.8, "body": 0.1, "contrast": 8.0}}
    runs = [_run("unet", s, [0.5, 0.6, 0.7]) for s in (1, 2, 3)]
    rng = np.random.default_rng(0)
    runs += [
        _run("attention_unet", s, list(np.array([0.5, 0.6, 0.7]) + rng.normal(0, 0.05, 3)), gates) for s in (1, 2, 3)
    ]
    runs += [_run("attention_unet_gated", s, [0.6, 0.7, 0.8], gates) for s in (1, 2, 3)]
    text = markdown(len(runs), "val", summarise_variants(runs), paired_to_reference(runs), None)
    assert "| unet | 3 |" in text and "## Paired difference to unet" in text
    assert "- attention_unet_gated against unet: better Dice, recall, precision, HD95 (mm)." in text
    assert "**+0.100 [+0.100, +0.100]**" in text
    assert "- attention_unet against unet: " in text and "not resolved: Dice" in text
    assert "| attention_unet | level1 | 0.80 ± 0.00 | 0.10 ± 0.00 | 8.0 ± 0.0 |" in text
    assert "phantoms only" in text  # no real CT: said, not silently left out


def _prediction(alpha: np.ndarray, hu: np.ndarray, affine: np.ndarray) -> Prediction:
    codes = np.round(alpha * ALPHA_STEPS).astype(np.uint8)
    return Prediction(
        labels=np.zeros(SHAPE, np.uint8),
        box_probabilities=np.zeros((2, *SHAPE), np.float32),
        input_affine=affine,
        attention={"level1": codes},
        input_hu=hu,
    )


def test_attention_contrast_is_organ_alpha_over_body_alpha_on_the_reference_grid() -> None:
    organ = np.zeros(SHAPE, bool)
    organ[4:7, 3:6, 2:5] = True
    body = np.zeros(SHAPE, bool)
    body[2:10, 1:9, :] = True
    hu = np.where(body, 40.0, -1000.0)
    alpha = np.where(organ, 0.8, np.where(body, 0.2, 0.0))
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    reference = LabelMap(organ.astype(np.int64), affine, (0, 1))
    columns = contrast_columns(_prediction(alpha, hu, affine), reference, Path("ct.nii.gz"), Path("ref.nii.gz"))
    expected_body = alpha[body].mean()
    assert columns["alpha_organ/level1"] == pytest.approx(0.8, abs=1 / ALPHA_STEPS)
    assert columns["alpha_body/level1"] == pytest.approx(expected_body, abs=1 / ALPHA_STEPS)
    assert columns["attention_contrast/level1"] == pytest.approx(0.8 / expected_body, rel=0.01)
    assert hu.max() > BODY_HU > hu.min()

    # The reference stored with its first axis reversed: alpha is moved onto its grid first.
    flip = np.diag([-2.0, 2.0, 3.0, 1.0])
    flip[0, 3] = 2.0 * (SHAPE[0] - 1)
    flipped = LabelMap(organ[::-1].astype(np.int64), flip, (0, 1))
    means = gate_means(_prediction(alpha, hu, affine), organ[::-1], flipped, Path("ct"), Path("ref"))
    assert means["level1"][0] == pytest.approx(0.8, abs=1 / ALPHA_STEPS)


def test_a_model_without_gates_gives_no_contrast_columns() -> None:
    prediction = _prediction(np.zeros(SHAPE), np.zeros(SHAPE), np.eye(4))
    prediction.attention.clear()
    reference = LabelMap(np.zeros(SHAPE, np.int64), np.eye(4), (0,))
    assert contrast_columns(prediction, reference, Path("ct"), Path("ref")) == {}


def test_preview_with_a_reference_shows_its_fullest_slice_outlined() -> None:
    organ = np.zeros(SHAPE, bool)
    organ[3:9, 3:7, 5] = True  # 24 voxels on slice 5
    organ[5, 4:6, 0:5] = True  # a thin tail moves the centroid below slice 5
    assert overlays.centroid_index(torch.from_numpy(organ), axis=2) != 5
    assert overlays.fullest_index(torch.from_numpy(organ), axis=2) == 5
    hu = np.full(SHAPE, 40.0)
    prediction = _prediction(np.where(organ, 0.9, 0.1), hu, np.eye(4))
    plain = render_preview(hu, prediction, (-175.0, 250.0))
    with_reference = render_preview(hu, prediction, (-175.0, 250.0), focus=organ, name="attention_unet seed 1")
    assert plain.shape == with_reference.shape
    white = (with_reference == 255).all(axis=2) & ~(plain == 255).all(axis=2)
    assert white.sum() > 50  # the outline, on the prediction panel and the gate panel


def test_stack_pads_narrow_rows() -> None:
    wide, narrow = np.zeros((5, 9, 3), np.uint8), np.full((4, 6, 3), 200, np.uint8)
    stacked = overlays.stack([wide, narrow])
    assert stacked.shape == (9, 9, 3)
    assert (stacked[5:, :6] == 200).all() and (stacked[5:, 6:] == overlays.BACKGROUND).all()
