"""The ablation report's statistics and gate figures: paired intervals, attention contrast, text, picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attnunet.evaluation.ablation import paired_to_reference, summarise_variants
from attnunet.evaluation.ablation_text import markdown
from attnunet.evaluation.attention_contrast import BODY_HU, contrast_columns, gate_contrast
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
    assert d.resolved and (d.seeds, d.cases, d.dropped_cases) == (3, 6, 0)
    assert d.per_seed == pytest.approx(table.mean(axis=1))


def test_noise_around_zero_is_not_resolved_and_undefined_cases_are_dropped() -> None:
    rng = np.random.default_rng(2)
    table = rng.normal(0, 0.05, size=(3, 6))
    table -= table.mean()
    d = paired_difference(table)
    assert d.low < 0 < d.high and not d.resolved
    with_nan = table.copy()
    with_nan[0, 0] = np.nan  # e.g. precision of an empty prediction: the case leaves every seed
    dropped = paired_difference(with_nan)
    assert (dropped.cases, dropped.dropped_cases) == (5, 1)
    assert dropped.mean == pytest.approx(table[:, 1:].mean())
    assert np.isnan(paired_difference(np.full((2, 3), np.nan)).mean)


def test_too_few_seeds_or_cases_give_no_interval() -> None:
    for table in ([[0.01]], [[0.01, 0.02, 0.03]], [[0.01], [0.02]]):
        d = paired_difference(np.array(table))
        assert np.isnan(d.low) and not d.resolved and d.text().endswith("[n/a]")


def test_one_lucky_seed_is_not_a_resolved_gain() -> None:
    """Seed variation counts: a gain carried by one seed alone is not resolved, while the same mean
    gain on every seed and case is."""
    one_seed = np.zeros((3, 6))
    one_seed[0] = 0.06
    every_seed = np.full((3, 6), 0.02)
    lucky, steady = paired_difference(one_seed), paired_difference(every_seed)
    assert lucky.mean == pytest.approx(steady.mean)
    assert not lucky.resolved and steady.resolved
    assert lucky.per_seed == pytest.approx((0.06, 0.0, 0.0))


@pytest.mark.parametrize("seed_sd, case_sd, residual_sd", [(1.0, 0.2, 0.2), (0.2, 1.0, 0.2), (0.0, 0.0, 1.0)])
def test_the_interval_holds_a_zero_difference_about_as_often_as_it_says(
    seed_sd: float, case_sd: float, residual_sd: float
) -> None:
    """3 seeds x 6 cases with no true difference: the 95% interval holds 0 in at least 90% of tables
    (a bootstrap redrawing seeds and cases held it in 79% when seeds dominate)."""
    rng = np.random.default_rng(7)
    held = []
    for _ in range(400):
        table = rng.normal(0, seed_sd, (3, 1)) + rng.normal(0, case_sd, (1, 6)) + rng.normal(0, residual_sd, (3, 6))
        d = paired_difference(table)
        held.append(d.low <= 0 <= d.high)
    assert np.mean(held) >= 0.9


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
    """Every cell of the variant is its U-Net cell + 0.05: only a correct pairing (same seed, same case,
    whatever order the runs and cases come in) gives a zero-width interval."""
    rng = np.random.default_rng(3)
    base = {s: list(rng.uniform(0.3, 0.8, 4)) for s in (1, 2, 3)}
    runs = [_run("unet", s, base[s]) for s in (1, 2, 3)]
    runs += [_run("attention_unet", s, [b + 0.05 for b in base[s]]) for s in (3, 1, 2)]
    for run in runs[3:]:
        run["cases"] = dict(reversed(run["cases"].items()))
    runs.append(_run("attention_unet", 4, [0.0] * 4))  # no U-Net with seed 4: not paired
    (row,) = paired_to_reference(runs)
    assert row["variant"] == "attention_unet" and row["seeds"] == [1, 2, 3] and row["cases"] == 4
    assert (row["dice"].low, row["dice"].mean, row["dice"].high) == pytest.approx((0.05, 0.05, 0.05))
    assert row["hd95_mm"].mean == pytest.approx(-0.5)
    assert paired_to_reference([r for r in runs if r["variant"] != "unet"]) == []


def test_sd_over_seeds_is_the_sample_sd() -> None:
    runs = [_run("unet", s, [d]) for s, d in ((1, 0.5), (2, 0.6), (3, 0.7))]
    (row,) = summarise_variants(runs)
    assert row["dice"] == pytest.approx((0.6, 0.1))  # ddof 1; the population SD would be 0.082


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
    assert "| attention_unet_gated | 3 x 3 |" in text and "+0.100, +0.100, +0.100 |" in text
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
    figures = gate_contrast(_prediction(alpha, hu, affine), organ[::-1], flipped, Path("ct"), Path("ref"))
    assert figures["level1"]["organ"] == pytest.approx(0.8, abs=1 / ALPHA_STEPS)


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
