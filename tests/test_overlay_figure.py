"""scripts/overlay_figure.py: reference and predictions over a real CT, Dice in the titles."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from overlay_figure import dice, figure

DATA = Path(__file__).parent / "data"
CT, PANCREAS = DATA / "abdomen_ct.nii.gz", DATA / "abdomen_pancreas.nii.gz"


def test_dice_of_masks() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    a[:2], b[1:3] = True, True
    assert dice(a, b) == pytest.approx(0.5) and dice(a, a) == 1.0
    assert np.isnan(dice(np.zeros_like(a), np.zeros_like(a)))


def test_one_panel_per_prediction_and_the_label_drawn(tmp_path: Path) -> None:
    reference = nib.load(PANCREAS)
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(reference.shape, np.uint8), reference.affine), empty)
    one = figure(CT, PANCREAS, {"same": PANCREAS})
    two = figure(CT, PANCREAS, {"same": PANCREAS, "empty": empty})
    assert one.shape[0] == two.shape[0] and two.shape[1] > one.shape[1] * 1.2
    width = (one.shape[1] - 4) // 3  # CT | reference | same, GAP 4 around
    ct, drawn = one[:, :width].astype(int), one[:, width : 2 * width].astype(int)
    red = (drawn[..., 0] - drawn[..., 1]) > 60
    assert red.sum() > 20 and ((ct[..., 0] - ct[..., 1]) > 60).sum() == 0  # the label tinted, the CT grey


def test_prediction_on_another_grid_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), other)
    with pytest.raises(SystemExit, match="other.nii.gz: shape"):
        figure(CT, PANCREAS, {"other": other})
