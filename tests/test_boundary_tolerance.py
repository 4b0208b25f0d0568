"""scripts/boundary_tolerance.py: Dice of a label against itself off by one voxel, on the training grid."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import boundary_tolerance
import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


def test_one_voxel_errors_of_a_cube() -> None:
    mask = np.zeros((10, 10, 10), bool)
    mask[3:7, 3:7, 3:7] = True  # 64 voxels
    errors = boundary_tolerance.one_voxel_errors(mask)
    assert errors["grown"] == pytest.approx(2 * 64 / (64 + 64 + 6 * 16))  # a face layer on each side
    assert errors["shrunk"] == pytest.approx(2 * 8 / (64 + 8))  # the 2^3 core
    assert errors["moved"] == pytest.approx(2 * 48 / 128)  # three quarters overlap, on every axis


def test_table_for_a_real_label_on_the_training_grid(tmp_path: Path, monkeypatch, capsys) -> None:
    for folder, source in (("imagesTr", "abdomen_ct.nii.gz"), ("labelsTr", "abdomen_pancreas.nii.gz")):
        (tmp_path / folder).mkdir()
        shutil.copy(DATA / source, tmp_path / folder / "abdomen.nii.gz")
    monkeypatch.setattr(sys, "argv", ["boundary_tolerance.py", str(tmp_path), "--spacing", "3", "3", "3"])
    boundary_tolerance.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| abdomen ")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    ml, voxels = float(cells[1]), int(cells[2])
    grown, shrunk, moved = (float(c) for c in cells[3:])
    assert voxels * 27 / 1000 == pytest.approx(ml, abs=0.05) and 10 < ml < 30  # a gland of 3 mm voxels
    assert 0.3 < shrunk < grown < moved < 0.95  # a thin organ: one voxel costs a lot
