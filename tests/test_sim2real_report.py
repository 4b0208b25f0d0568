"""scripts/sim2real_report.py: where a prediction falls on a real CT's organ map, without the pancreas label."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import sim2real_report

DATA = Path(__file__).parent / "data"
ORGANS = nib.load(DATA / "abdomen_organs.nii.gz")
NAMES = {int(k): v for k, v in json.loads((DATA / "abdomen_organs.json").read_text()).items()}


def signals_of(prediction: np.ndarray, out: Path, pancreas: int | None = None) -> dict[str, float]:
    """The script's real-CT signals for a prediction already on disk (so no model runs)."""
    out.mkdir(parents=True)
    nib.save(nib.Nifti1Image(prediction.astype(np.uint8), ORGANS.affine), out / "abdomen_ct_seg.nii.gz")
    organs = np.asarray(ORGANS.dataobj)
    return sim2real_report.real_ct_signals([], DATA / "abdomen_ct.nii.gz", organs, NAMES, out, pancreas)


def test_a_prediction_on_the_pancreas_touches_no_other_organ(tmp_path: Path) -> None:
    organs = np.asarray(ORGANS.dataobj)
    row = signals_of(organs == 7, tmp_path / "a")
    assert row["on_other_organs"] == 0.0 and row["on_liver"] == 0.0
    assert row["volume_ml"] == pytest.approx(int((organs == 7).sum()) * 27 / 1000)
    assert "pancreas_dice" not in row  # not read unless asked for
    assert signals_of(organs == 7, tmp_path / "b", pancreas=7)["pancreas_dice"] == pytest.approx(1.0)


def test_a_prediction_on_liver_and_duodenum_is_counted_there(tmp_path: Path) -> None:
    organs = np.asarray(ORGANS.dataobj)
    liver, duodenum = organs == 5, organs == 19
    row = signals_of(liver | duodenum, tmp_path / "a", pancreas=7)
    n = int((liver | duodenum).sum())
    assert row["on_liver"] == pytest.approx(liver.sum() / n) and row["on_duodenum"] == pytest.approx(duodenum.sum() / n)
    assert row["on_other_organs"] == pytest.approx(1.0) and row["pancreas_dice"] == 0.0
