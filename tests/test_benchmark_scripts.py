"""The benchmark scripts keep working: the full-size CT they build and their end-to-end runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from benchmark_full_ct import AIR_HU, TEST_CT, agreement, make_checkpoint, make_full_ct, run_infer

from attnunet.utils.hardware import cpu_has_native_bf16
from tests.helpers import SCRIPTS


def test_full_ct_is_the_test_ct_at_clinical_geometry(tmp_path: Path) -> None:
    path = make_full_ct(tmp_path / "ct.nii.gz", size=(96, 96, 40), spacing=(4.0, 4.0, 5.0))
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    assert img.shape == (96, 96, 40) and data.dtype == np.int16
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")  # stored as scanners store it
    assert np.allclose(np.abs(np.diag(img.affine)[:3]), (4.0, 4.0, 5.0))
    # the field around the body is air; the body itself has soft-tissue values
    assert (data[:2] == AIR_HU).all() and (data[:, :2] == AIR_HU).all()
    assert np.median(data[40:56, 40:56, 15:25]) > -200
    # the centre of the field holds the centre of the source CT (RAS world coordinates agree)
    src = nib.load(TEST_CT)
    centre = img.affine @ np.array([47.5, 47.5, 19.5, 1.0])
    src_voxel = np.linalg.inv(src.affine) @ centre
    assert np.all(np.abs(src_voxel[:3] - (np.asarray(src.shape) - 1) / 2) < 3)

    # the flip to LPS storage keeps anatomy in place: the body's world extent matches the source's
    def body_extent(image: nib.Nifti1Image) -> np.ndarray:
        voxels = np.argwhere(np.asarray(image.dataobj) > -500)
        world = nib.affines.apply_affine(image.affine, voxels)
        return np.stack([world.min(0), world.max(0)])

    src_extent, out_extent = body_extent(src), body_extent(img)
    assert np.all(np.abs(src_extent[:, :2] - out_extent[:, :2]) < 8)  # mm, x and y (z is cropped)


def test_agreement_counts_voxels_and_foreground_overlap(tmp_path: Path) -> None:
    a = np.zeros((10, 10, 10), dtype=np.uint8)
    a[2:6, 2:6, 2:6] = 1  # 64 voxels
    b = a.copy()
    b[2:6, 2:6, 2] = 0  # 16 fewer
    paths = []
    for name, data in (("a", a), ("b", b)):
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / f"{name}.nii.gz")
        paths.append(tmp_path / f"{name}.nii.gz")
    same = agreement(*paths)
    assert same["voxel_agreement"] == pytest.approx(1 - 16 / 1000)
    assert same["foreground_dice"] == pytest.approx(2 * 48 / (64 + 48))
    assert same["foreground_voxels"] == 48


@pytest.mark.slow
def test_end_to_end_infer_run_reports_time_and_memory(tmp_path: Path) -> None:
    image = make_full_ct(tmp_path / "ct.nii.gz", size=(64, 64, 24), spacing=(6.0, 6.0, 6.0))
    ckpt = make_checkpoint(tmp_path / "default.ckpt")
    result = run_infer(ckpt, image, tmp_path / "out", device="cpu")
    assert (tmp_path / "out" / "ct_seg.nii.gz").is_file()
    assert result["process_s"] > 0 and result["case_s"] is not None and result["case_s"] <= result["process_s"]
    assert 0.1 < result["peak_rss_gib"] < 16


@pytest.mark.slow
def test_model_benchmark_prints_ratios_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    ckpt = make_checkpoint(tmp_path / "default.ckpt")  # attnunet rows run these weights
    cmd = [sys.executable, str(SCRIPTS / "benchmark.py"), "--device", "cpu", "--patch", "32", "--ckpt", str(ckpt)]
    cmd += ["--volume", "40", "40", "36", "--repeats", "1", "--no-full-ct", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # bf16 rows only where the CPU runs bf16 natively (emulated, they take minutes and auto skips bf16).
    bf16 = cpu_has_native_bf16()
    shipped = "attnunet_bf16" if bf16 else "attnunet_fp32"
    assert "| monai_fp32 | " in proc.stdout and f"| {shipped} | " in proc.stdout
    assert f"{shipped} (as shipped) against MONAI fp32 as its users run it (untuned)" in proc.stdout
    results = json.loads(out.read_text())
    rows = results["rows"]["cpu"]
    fp32_rows = {"monai_fp32", "monai_fp32_untuned", "attnunet_fp32", "attnunet_fp32_untuned"}
    assert set(rows) == fp32_rows | ({"monai_bf16", "attnunet_bf16"} if bf16 else set())
    # Against the fp32 reference: the untuned run (no channels-last, no thread tuning) must give the
    # same labels; bf16 rounds, so a few voxels may change.
    assert rows["attnunet_fp32_untuned"]["argmax_agreement"] > 0.999
    if bf16:
        assert 0.9 < rows["attnunet_bf16"]["argmax_agreement"] <= 1.0
    assert all(r["forward_s"] > 0 and r["train_step_s"] > 0 and r["peak_mib"] > 0 for r in rows.values())
    assert results["gflop_per_patch"]["attnunet"] > results["gflop_per_patch"]["monai"] > 0
    assert results["peak_gflops"]["cpu"]["fp32"] > 0
