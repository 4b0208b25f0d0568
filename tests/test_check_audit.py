"""``attnunet-check`` and ``attnunet-train`` on a real dataset with planted defects: a label flipped
against its CT, the same scan under another name, a training scan in the test set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from attnunet.data.fingerprint import fingerprint_cases, suggest
from tests.helpers import CT, PANCREAS

pytestmark = pytest.mark.slow


def attnunet(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATTNUNET_CACHE": str(cwd / "cache")}
    cmd = [sys.executable, "-m", "attnunet", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def save_case(root: Path, name: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> dict[str, str]:
    paths = {"image": root / "imagesTr" / f"{name}.nii.gz", "label": root / "labelsTr" / f"{name}.nii.gz"}
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), paths["image"])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(label), affine), paths["label"])
    return {"image": str(paths["image"]), "label": str(paths["label"]), "case_id": name}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """nih0001: the real CT with its label; nih0002: another scan (the CT moved 30 mm in the field
    of view) whose label is stored flipped along y; nih0003: nih0001 re-saved as int16 under another name."""
    root = tmp_path_factory.mktemp("planted") / "ds"
    img = nib.load(CT)
    ct = np.asanyarray(img.dataobj)
    label = np.asanyarray(nib.load(PANCREAS).dataobj)
    moved_ct, moved_label = np.full_like(ct, -1024), np.zeros_like(label)
    moved_ct[10:], moved_label[10:] = ct[:-10], label[:-10]
    cases = [
        save_case(root, "nih0001", ct, label, img.affine),
        save_case(root, "nih0002", moved_ct, moved_label[:, ::-1], img.affine),
        save_case(root, "nih0003", ct.astype(np.int16), label, img.affine),
    ]
    return root, cases


def test_check_reports_a_flipped_label_and_a_duplicate_and_keeps_the_window_clean(
    planted: tuple[Path, list[dict[str, str]]], tmp_path: Path
) -> None:
    root, cases = planted
    result = attnunet(["check", "data=nifti_folder", f"data.root={root}", f"run_dir={tmp_path / 'out'}"], tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error: ", "warning: "))]
    assert lines[0].startswith("error: nih0002: label fits the image far better flipped along y (A-P): ")
    assert "was it stored mirrored?" in lines[0]
    assert lines[1] == "warning: nih0003: same scan as nih0001 (identical voxels): keep one of them"
    assert len(lines) == 2  # nih0001 is clean

    stats = yaml.safe_load((tmp_path / "out" / "fingerprint.yaml").read_text())
    assert stats["cases_with_errors"] == 1 and stats["cases_with_warnings"] == 1
    assert [f["check"] for f in stats["findings"]["nih0002"]] == ["label_misaligned"]
    assert stats["findings"]["nih0002"][0]["severity"] == "error"
    assert stats["left_out_of_statistics"] == {"nih0002": "label_misaligned", "nih0003": "duplicate"}
    assert stats["statistics_from_cases"] == 1
    # The suggested window comes from nih0001 alone; with the flipped label it would reach into bone.
    clean = suggest(fingerprint_cases(cases[:1], num_labels=2))["intensity_window"]
    corrupted = suggest(fingerprint_cases(cases[:2], num_labels=2))["intensity_window"]
    assert stats["suggested"]["intensity_window"] == clean
    assert clean[1] < 150 < corrupted[1]
    override = yaml.safe_load((tmp_path / "out" / "experiment" / "fingerprint.yaml").read_text())
    assert override["data"]["preprocessing"]["intensity_window"] == clean


def test_check_reports_a_training_scan_in_the_test_set(
    planted: tuple[Path, list[dict[str, str]]], tmp_path: Path
) -> None:
    root, _ = planted
    test_root = tmp_path / "imagesTs"
    test_root.mkdir()
    img = nib.load(CT).as_reoriented(np.array([[0, -1], [1, -1], [2, 1]]))  # stored LPS
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, 4:], img.affine), test_root / "patient9.nii.gz")
    args = ["check", "data=nifti_folder", f"data.root={root}", "data.max_cases=2", f"test_root={test_root}"]
    result = attnunet([*args, f"run_dir={tmp_path / 'out'}"], tmp_path)
    assert result.returncode == 1
    leaks = [line for line in result.stderr.splitlines() if "test_leak" in line or "test case" in line]
    assert leaks == [
        "error: nih0001: same scan as test case patient9 (108 slices in common, block means 0.0 HU apart): a leak"
    ]


def test_training_refuses_a_flipped_label_with_one_line_and_caches_the_audit(
    planted: tuple[Path, list[dict[str, str]]], tmp_path: Path
) -> None:
    root, _ = planted
    args = ["train", "data=nifti_folder", f"data.root={root}", "trainer=cpu", "trainer.max_epochs=1"]
    result = attnunet(args, tmp_path)
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert (
        "dataset audit: 1 case(s) with errors, e.g. nih0002: label fits the image far better flipped along y" in error
    )
    assert error.endswith("or set check.ignore_errors=true")
    assert not list(tmp_path.glob("outputs/train/*/checkpoints/*.ckpt"))
    cached = sorted((tmp_path / "cache" / "audit").glob("*.npz"))
    assert len(cached) == 3
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = attnunet(args, tmp_path)  # the second start reads every case's audit from the cache
    assert again.returncode == 1 and error in again.stderr
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "cache" / "audit").glob("*.npz"))] == stamps
