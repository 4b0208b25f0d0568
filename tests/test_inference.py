"""attnunet-infer and attnunet-evaluate: geometry, outputs, folder runs, safe checkpoints."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.io import find_inputs, save_like
from attnunet.inference.predictor import ALPHA_STEPS, Predictor, PredictorSettings
from attnunet.inference.runner import predict_cases
from attnunet.inference.sliding_window import predict_logits
from attnunet.training.module import SegmentationModule
from attnunet.utils import overlays
from attnunet.utils.dicom_writer import write_series

DATA = Path(__file__).parent / "data"
CT = DATA / "abdomen_ct.nii.gz"


def make_checkpoint(
    path: Path, labels: dict[int, str], spacing=(4.0, 4.0, 4.0), flip_axes: tuple[int, ...] = (0, 1, 2)
) -> Path:
    """A checkpoint with the structure Lightning writes (state_dict + our description), of a model
    trained mirrored along ``flip_axes``."""
    torch.manual_seed(0)
    module = SegmentationModule(
        model={"name": "attention_unet", "channels": [4, 8, 16]},
        labels=labels,
        preprocessing={"spacing": list(spacing), "intensity_window": [-175, 250]},
        sliding_window={"roi_size": [32, 32, 32], "overlap": 0.25, "sw_batch_size": 4},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True},
        flip_axes=flip_axes,
    )
    torch.save({"state_dict": module.state_dict(), "attnunet": module.describe()}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt", {0: "background", 1: "pancreas"})


def run_cli(command: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "attnunet", command, *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def stored_as(src: Path, axcodes: str, dst: Path) -> Path:
    """The same scan written with another voxel order (world content unchanged)."""
    img = nib.load(src)
    ornt = nib.orientations.ornt_transform(nib.io_orientation(img.affine), nib.orientations.axcodes2ornt(axcodes))
    data = nib.orientations.apply_orientation(np.asanyarray(img.dataobj), ornt)
    nib.save(nib.Nifti1Image(data, img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape)), dst)
    return dst


def test_prediction_is_on_the_input_grid_and_storage_invariant(checkpoint: Path, tmp_path: Path) -> None:
    predictor = Predictor(load_checkpoint(checkpoint), PredictorSettings(precision="fp32", attention=True))
    ref = predictor(CT)
    img = nib.load(CT)
    assert ref.labels.shape == img.shape and ref.labels.dtype == np.uint8
    assert ref.probabilities.shape == (2, *img.shape)
    np.testing.assert_allclose(ref.probabilities.sum(0), 1.0, atol=1e-4)
    assert sorted(ref.attention) == ["level1"] and ref.attention["level1"].shape == img.shape
    for code in ("LPI", "SRA"):
        moved = stored_as(CT, code, tmp_path / f"{code}.nii.gz")
        out = predictor(moved)
        # Bring the prediction back to the original storage and compare voxel by voxel.
        m = nib.load(moved)
        back = nib.orientations.ornt_transform(nib.io_orientation(m.affine), nib.io_orientation(img.affine))
        labels = nib.orientations.apply_orientation(out.labels, back)
        assert labels.shape == img.shape
        assert (labels == ref.labels).mean() > 0.999


def test_infer_folder_writes_outputs_skips_bad_cases_and_continues(checkpoint: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = stored_as(CT, "LPS", inputs / "ct_a.nii.gz")
    (inputs / "broken.nii.gz").write_bytes(b"\x89PNG\r\n\x1a\n not a nifti")
    four_d = nib.Nifti1Image(np.zeros((8, 8, 8, 2), np.int16), np.eye(4))
    nib.save(four_d, inputs / "four_d.nii.gz")
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs.iterdir()}
    out = tmp_path / "out"
    args = [
        f"ckpt_path={checkpoint}",
        f"input={inputs}",
        f"output_dir={out}",
        "save_attention=true",
        "save_probabilities=true",
        "save_preview=true",
        "precision=fp32",
    ]
    result = run_cli("infer", args, tmp_path)
    assert result.returncode == 1
    assert "1 done" in result.stdout and "2 failed" in result.stdout
    assert f"{inputs / 'broken.nii.gz'}" in result.stderr and "expected a 3D volume" in result.stderr
    seg = nib.load(out / "ct_a_seg.nii.gz")
    src = nib.load(good)
    assert seg.shape == src.shape and seg.get_data_dtype() == np.uint8
    np.testing.assert_allclose(seg.affine, src.affine)
    assert seg.header["qform_code"] == src.header["qform_code"] or src.header["qform_code"] == 0
    att = nib.load(out / "ct_a_attention_level1.nii.gz")
    assert att.shape == src.shape and att.get_data_dtype() == np.uint8  # scaled: floats when read
    assert (att.dataobj.slope, att.dataobj.inter) == (pytest.approx(1 / ALPHA_STEPS), 0.0)  # floats when read
    predictor = Predictor(load_checkpoint(checkpoint), PredictorSettings(precision="fp32", attention=True))
    in_memory = predictor(good)
    # Every output voxel for voxel as predicted (the writer reorders memory to NIfTI's voxel order).
    np.testing.assert_allclose(att.get_fdata(), in_memory.alpha("level1"), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(seg.dataobj), in_memory.labels)
    probabilities = nib.load(out / "ct_a_probabilities.nii.gz")
    assert probabilities.shape == (*src.shape, 2)
    per_class_last = np.moveaxis(in_memory.probabilities, 0, -1)
    np.testing.assert_array_equal(probabilities.get_fdata(dtype=np.float32), per_class_last)
    preview = np.asarray(Image.open(out / "ct_a_preview.png"))
    # Axial slice, anterior up: panels of (AP, LR) in square millimetre pixels, short side enlarged.
    sx, sy, _ = nib.affines.voxel_sizes(src.affine)
    h, w = overlays.display_size((src.shape[1], src.shape[0]), (sy, sx))
    assert min(h, w) >= overlays.SHORT_SIDE
    top = overlays.GAP + 2 * (overlays.FONT_SIZE + 4)  # two title lines
    assert preview.shape[0] == top + h + overlays.GAP
    assert preview.shape[1] > overlays.GAP + 3 * (w + overlays.GAP)  # CT | labels | level1, then the colour bar
    ct_panel = preview[top : top + h, overlays.GAP : overlays.GAP + w].astype(float)
    heat_panel = preview[top : top + h, overlays.GAP + 2 * (w + overlays.GAP) :][:, :w].astype(float)
    assert ct_panel.std() > 10  # the CT itself is visible, not a blank or constant picture
    assert np.abs(ct_panel - heat_panel).mean() > 1  # the attention overlay colours the CT
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp files
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs.iterdir()} == digests

    mtime = os.stat(out / "ct_a_seg.nii.gz").st_mtime_ns
    again = run_cli("infer", [*args, "continue=true"], tmp_path)
    assert "1 already finished" in again.stdout
    assert os.stat(out / "ct_a_seg.nii.gz").st_mtime_ns == mtime


@pytest.mark.parametrize("qcode, scode", [(1, 0), (0, 2), (1, 1)])
def test_outputs_mirror_the_inputs_qform_and_sform(tmp_path: Path, qcode: int, scode: int) -> None:
    src = nib.load(CT)
    rotated = src.affine.copy()
    rotated[:3, :3] = rotated[:3, :3] @ np.array([[0.96, -0.28, 0], [0.28, 0.96, 0], [0, 0, 1]])  # oblique
    img = nib.Nifti1Image(np.zeros((6, 5, 4), np.int16), rotated)
    img.set_qform(rotated if qcode else None, code=qcode)
    img.set_sform(rotated if scode else None, code=scode)
    nib.save(img, tmp_path / "in.nii.gz")
    reference = nib.load(tmp_path / "in.nii.gz")
    save_like(np.ones((6, 5, 4), np.uint8), reference, tmp_path / "out.nii.gz", inputs=set())
    out = nib.load(tmp_path / "out.nii.gz")
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (qcode, scode)
    np.testing.assert_allclose(out.affine, reference.affine, atol=1e-5)
    with pytest.raises(AttnUNetError, match="refusing to overwrite an input"):
        save_like(np.ones((6, 5, 4), np.uint8), reference, tmp_path / "in.nii.gz", {(tmp_path / "in.nii.gz").resolve()})


def test_output_dir_that_is_a_file_is_a_clean_error(checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = run_cli("infer", [f"ckpt_path={checkpoint}", f"input={CT}", f"output_dir={target}"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: {target}: output_dir exists and is not a folder"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_with_pickled_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "attnunet": {}, "x": _Payload(marker)}, evil)
    with pytest.raises(AttnUNetError, match="refused: not a plain-data checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_non_attnunet_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(AttnUNetError, match="not an attnunet checkpoint"):
        load_checkpoint(path)


def test_evaluate_checkpoint_on_a_labelled_split(tiny_dataset: Path, tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt", {0: "background", 1: "pancreas", 2: "lesion"})
    result = run_cli(
        "evaluate",
        [
            f"ckpt_path={ckpt}",
            "data=nifti_folder",
            f"data.root={tiny_dataset}",
            "split=all",
            f"run_dir={tmp_path / 'ev'}",
            "precision=fp32",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "ev" / "metrics.csv").read_text().strip().splitlines()
    assert lines[0].split(",") == [
        "case",
        "label",
        "dice",
        "hd95_mm",
        "nsd",
        "precision",
        "recall",
        "pred_ml",
        "ref_ml",
        "uncertainty",
    ]
    assert len(lines) == 1 + 4 * 2  # 4 cases x 2 foreground labels
    entropy = [float(line.split(",")[-1]) for line in lines[1:]]
    assert all(0 <= e <= np.log(3) for e in entropy)  # mean predictive entropy over 3 classes
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["cases"] == 4 and set(summary["per_label"]) == {"pancreas", "lesion"}


def test_evaluate_refuses_a_checkpoint_with_another_label_map(checkpoint: Path, tiny_dataset: Path, tmp_path: Path):
    result = run_cli(
        "evaluate", [f"ckpt_path={checkpoint}", "data=nifti_folder", f"data.root={tiny_dataset}"], tmp_path
    )
    assert result.returncode == 1 and "label map" in result.stderr and str(checkpoint) in result.stderr


def test_evaluate_prediction_folder_against_labels(tmp_path: Path) -> None:
    preds, refs = tmp_path / "p", tmp_path / "r"
    preds.mkdir()
    refs.mkdir()
    affine = np.diag([0.8, 0.8, 2.5, 1])
    ref = np.zeros((20, 20, 10), np.uint8)
    ref[5:15, 5:15, 2:8] = 1
    pred = np.zeros_like(ref)
    pred[5:15, 5:15, 2:5] = 1
    nib.save(nib.Nifti1Image(ref, affine), refs / "case1.nii.gz")
    nib.save(nib.Nifti1Image(pred, affine), preds / "case1_seg.nii.gz")
    result = run_cli(
        "evaluate",
        [f"pred_dir={preds}", f"label_dir={refs}", f"run_dir={tmp_path / 'ev'}", "labels={0: bg, 1: organ}"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    organ = summary["per_label"]["organ"]
    assert organ["dice"]["mean"] == pytest.approx(2 / 3)
    assert organ["recall"]["mean"] == pytest.approx(0.5) and organ["precision"]["mean"] == pytest.approx(1.0)
    assert organ["ref_ml"]["mean"] == pytest.approx(600 * 0.8 * 0.8 * 2.5 / 1000)


def test_dicom_series_gives_the_same_mask_as_the_nifti(checkpoint: Path, tmp_path: Path) -> None:
    series = write_series(CT, tmp_path / "in" / "patient1" / "series1")
    out = tmp_path / "out"
    result = run_cli(
        "infer",
        [f"ckpt_path={checkpoint}", f"input={tmp_path / 'in'}", f"output_dir={out}", "precision=fp32"]
        + ["save_preview=true"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    preview = np.asarray(Image.open(out / "patient1_series1_preview.png"))
    assert preview.shape[0] > overlays.SHORT_SIDE and preview.std() > 10  # drawn from the series read once
    seg = nib.load(out / "patient1_series1_seg.nii.gz")
    ref = Predictor(load_checkpoint(checkpoint), PredictorSettings(precision="fp32"))(CT)
    np.testing.assert_allclose(seg.affine, nib.load(CT).affine, atol=1e-3)
    assert seg.shape == ref.labels.shape
    assert (np.asanyarray(seg.dataobj) == ref.labels).mean() > 0.999
    assert series.is_dir() and len(list(series.iterdir())) == 112  # input untouched


def test_mixed_dicom_series_and_empty_folders_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    write_series(CT, mixed)
    small = nib.Nifti1Image(np.zeros((8, 8, 3), np.int16), np.eye(4))
    nib.save(small, tmp_path / "small.nii.gz")
    write_series(tmp_path / "small.nii.gz", tmp_path / "other")
    for f in (tmp_path / "other").iterdir():
        f.rename(mixed / f"other_{f.name}")
    with pytest.raises(AttnUNetError, match="mixes 2 DICOM series"):
        Predictor(load_checkpoint(checkpoint)).preprocess(mixed)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AttnUNetError, match="no DICOM series"):
        find_inputs(tmp_path / "empty")


def test_sharded_inference_equals_one_process(checkpoint: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for code in ("RAS", "LPS", "SRA"):
        stored_as(CT, code, inputs / f"ct_{code}.nii.gz")
    common = [f"ckpt_path={checkpoint}", f"input={inputs}", "precision=fp32"]
    for rank in range(2):  # as two torchrun workers would (environment variables RANK/WORLD_SIZE)
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2"}
        result = subprocess.run(
            [sys.executable, "-m", "attnunet", "infer", *common, f"output_dir={tmp_path / 'sharded'}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"{2 - rank} done" in result.stdout  # rank 0: cases 0 and 2, rank 1: case 1
    single = run_cli("infer", [*common, f"output_dir={tmp_path / 'single'}"], tmp_path)
    assert single.returncode == 0
    names = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "sharded").iterdir()) and len(names) == 3
    for name in names:
        a = np.asanyarray(nib.load(tmp_path / "single" / name).dataobj)
        b = np.asanyarray(nib.load(tmp_path / "sharded" / name).dataobj)
        assert np.array_equal(a, b)


def test_flip_tta_averages_the_unflipped_predictions(checkpoint: Path) -> None:
    model = load_checkpoint(checkpoint)
    plain = Predictor(model, PredictorSettings(precision="fp32"))
    tta = Predictor(model, PredictorSettings(precision="fp32", tta=True))
    x = plain.preprocess(CT).as_tensor()[None]
    with torch.inference_mode():
        expected = torch.zeros(1, 2, *x.shape[2:])
        for n in range(4):
            for axes in itertools.combinations((2, 3, 4), n):
                logits = predict_logits(plain.net, torch.flip(x, axes) if axes else x, plain.window)
                expected += torch.flip(torch.softmax(logits, 1), axes) if axes else torch.softmax(logits, 1)
        got, _ = tta._probabilities(x)
    torch.testing.assert_close(got, expected / 8, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, plain._probabilities(x)[0], atol=1e-3)


def test_flip_tta_flips_only_along_the_axes_the_model_was_trained_mirrored(tmp_path: Path) -> None:
    one_axis = load_checkpoint(make_checkpoint(tmp_path / "x.ckpt", {0: "background", 1: "pancreas"}, flip_axes=(0,)))
    plain = Predictor(one_axis, PredictorSettings(precision="fp32"))
    tta = Predictor(one_axis, PredictorSettings(precision="fp32", tta=True))
    x = plain.preprocess(CT).as_tensor()[None]
    with torch.inference_mode():
        mirrored = predict_logits(plain.net, torch.flip(x, (2,)), plain.window)
        expected = (
            torch.softmax(predict_logits(plain.net, x, plain.window), 1) + torch.flip(mirrored.softmax(1), (2,))
        ) / 2
        got, _ = tta._probabilities(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_flip_tta_is_refused_for_a_model_trained_without_flips(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "noflip.ckpt", {0: "background", 1: "pancreas"}, flip_axes=())
    with pytest.raises(AttnUNetError, match="tta=true needs a model trained with flip augmentation") as e:
        Predictor(load_checkpoint(path), PredictorSettings(precision="fp32", tta=True))
    assert "noflip.ckpt" in str(e.value)
    Predictor(load_checkpoint(path), PredictorSettings(precision="fp32"))  # without TTA it runs
    result = run_cli(
        "infer", [f"ckpt_path={path}", f"input={CT}", f"output_dir={tmp_path / 'out'}", "tta=true"], tmp_path
    )
    assert result.returncode != 0 and "tta=true needs a model trained with flip augmentation" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_largest_component_leaves_one_blob_per_label(checkpoint: Path) -> None:
    model = load_checkpoint(checkpoint)
    raw = Predictor(model, PredictorSettings(precision="fp32"))(CT).labels
    kept = Predictor(model, PredictorSettings(precision="fp32", largest_component=True))(CT).labels
    full = np.ones((3, 3, 3))  # 26-connectivity, as MONAI's transform uses by default
    assert ndimage.label(raw == 1, full)[1] > 1  # the untrained net predicts scattered blobs
    assert ndimage.label(kept == 1, full)[1] == 1
    sizes = np.bincount(ndimage.label(raw == 1, full)[0].ravel())[1:]
    assert (kept == 1).sum() == sizes.max()
    # auto (the default) follows the choice that training stored in the checkpoint.
    model.meta["postprocessing"] = {"largest_component": [1]}
    np.testing.assert_array_equal(Predictor(model, PredictorSettings(precision="fp32"))(CT).labels, kept)


def test_dataset_json_test_list_is_an_input(tmp_path: Path) -> None:
    (tmp_path / "imagesTs").mkdir()
    stored_as(CT, "RAS", tmp_path / "imagesTs" / "pat7_0000.nii.gz")
    meta = {"labels": {"0": "background", "1": "pancreas"}, "training": [], "test": ["./imagesTs/pat7_0000.nii.gz"]}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    assert find_inputs(tmp_path / "dataset.json") == [("pat7", tmp_path / "imagesTs" / "pat7_0000.nii.gz")]


def test_keep_input_returns_the_volume_as_read(checkpoint: Path, tmp_path: Path) -> None:
    """The preview's CT comes from the one read of the input, in the file's storage order."""
    moved = stored_as(CT, "LPS", tmp_path / "lps.nii.gz")
    model = load_checkpoint(checkpoint)
    kept = Predictor(model, PredictorSettings(precision="fp32", keep_input=True))(moved)
    assert kept.input_hu is not None and kept.input_hu.shape == kept.labels.shape
    np.testing.assert_array_equal(kept.input_hu, nib.load(moved).get_fdata())
    assert Predictor(model, PredictorSettings(precision="fp32"))(moved).input_hu is None
    with pytest.raises(ValueError, match="save_preview needs"):
        predict_cases(Predictor(model), [("lps", moved)], tmp_path / "out", save_preview=True)
