"""attnunet-check finds planted problems and suggests settings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from attnunet.data.datalist import load_cases
from attnunet.data.fingerprint import fingerprint_cases, suggest
from attnunet.data.transforms import PreprocessingSpec
from tests.helpers import compose_train


def test_fingerprint_suggestions_follow_the_rules(tiny_dataset: Path) -> None:
    fp = fingerprint_cases(load_cases(tiny_dataset / "dataset.json"), num_labels=3)
    assert not fp.problems and len(fp.spacings) == 4
    s = suggest(fp)
    median = np.median(np.array(fp.spacings), 0)
    assert s["spacing"] == [round(float(v), 3) for v in median]  # ratio < 3 here: plain median
    lo, hi = s["intensity_window"]
    foreground = np.concatenate(fp.foreground_hu)
    assert np.mean(foreground < lo) == pytest.approx(0.005, abs=0.002)  # 0.5th and 99.5th percentiles
    assert np.mean(foreground > hi) == pytest.approx(0.005, abs=0.002)
    assert -400 < lo < 60 < hi < 300  # pancreas-like soft tissue (fatty lobules and partial volume below)
    assert all(p % 16 == 0 and 32 <= p <= 160 for p in s["patch_size"])
    assert np.prod(s["patch_size"]) <= 96**3


@pytest.mark.slow  # the command end to end over whole volumes
def test_check_reports_planted_problems(tiny_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    meta = json.loads((root / "dataset.json").read_text())
    paths = [(root / c["image"], root / c["label"]) for c in meta["training"]]

    img = nib.load(paths[0][1])  # label with a shifted affine
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine + np.diag([0, 0, 0.5, 0])), paths[0][1])
    img = nib.load(paths[1][1])  # stray label value
    data = np.asanyarray(img.dataobj).copy()
    data[0, 0, 0] = 9
    nib.save(nib.Nifti1Image(data, img.affine), paths[1][1])
    img = nib.load(paths[2][0])  # NaN in the image
    data = np.asanyarray(img.dataobj).astype(np.float32)
    data[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), paths[2][0])

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "attnunet",
            "check",
            "data=nifti_folder",
            f"data.root={root}",
            f"run_dir={tmp_path / 'out'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 3
    joined = "\n".join(problems)
    assert "label affine differs" in joined and "outside the label map" in joined and "NaN" in joined
    stats = yaml.safe_load((tmp_path / "out" / "fingerprint.yaml").read_text())
    assert stats["cases_ok"] == 1 and stats["cases_with_problems"] == 3
    text = (tmp_path / "out" / "experiment" / "fingerprint.yaml").read_text()
    assert text.startswith("# @package _global_")
    override, suggested = yaml.safe_load(text), stats["suggested"]
    assert override["data"]["patch_size"] == suggested["patch_size"]
    wanted = {"spacing": suggested["spacing"], "intensity_window": suggested["intensity_window"]}
    assert override["data"]["preprocessing"] == wanted
    # It lands on the keys training reads: the merged config builds that preprocessing.
    cfg = OmegaConf.merge(compose_train([]), override)
    spec = PreprocessingSpec.from_dict(OmegaConf.to_container(cfg.data.preprocessing))
    assert list(spec.spacing) == suggested["spacing"] and list(spec.intensity_window) == suggested["intensity_window"]
