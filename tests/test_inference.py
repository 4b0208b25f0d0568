"""attnunet-infer and attnunet-evaluate: geometry, outputs, folder runs, safe checkpoints."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from scipy import ndimage

from attnunet.cli.infer import my_share
from attnunet.cli.train import resolve_checkpoint
from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.io import find_inputs, save_like
from attnunet.inference.predictor import ALPHA_STEPS, Predictor, PredictorSettings
from attnunet.inference.runner import predict_cases
from attnunet.inference.sliding_window import predict_logits
from attnunet.io.dicom_writer import write_series
from attnunet.utils import overlays
from tests.helpers import (
    CT,
    assert_same_prediction,
    back_to_storage_of,
    make_checkpoint,
    run_cli,
    stored_as,
)

FP32 = PredictorSettings(precision="fp32")


def test_prediction_is_on_the_input_grid_and_storage_invariant(
    checkpoint: Path, cropped_ct: Path, tmp_path: Path
) -> None:
    predictor = Predictor(load_checkpoint(checkpoint), PredictorSettings(precision="fp32", attention=True))
    ref = predictor(cropped_ct)
    img = nib.load(cropped_ct)
    assert ref.labels.shape == img.shape and ref.labels.dtype == np.uint8
    assert ref.probabilities.shape == (2, *img.shape)
    np.testing.assert_allclose(ref.probabilities.sum(0), 1.0, atol=1e-4)
    assert sorted(ref.attention) == ["level1"] and ref.attention["level1"].shape == img.shape
    for code in ("LPI", "SRA"):
        moved = stored_as(cropped_ct, code, tmp_path / f"{code}.nii.gz")
        out = predictor(moved)
        assert out.labels.shape == nib.load(moved).shape
        # Brought back to the original storage, voxel by voxel the same prediction.
        assert_same_prediction(
            back_to_storage_of(out.probabilities, moved, cropped_ct),
            back_to_storage_of(out.labels, moved, cropped_ct),
            ref.probabilities,
            ref.labels,
            atol=1e-4,
        )


def rotated_about_z(affine: np.ndarray, degrees: float) -> np.ndarray:
    """``affine`` turned about the world's z axis through the volume's origin voxel (an oblique scan)."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    turned = affine.copy()
    turned[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    return turned


def test_oblique_scan_is_predicted_on_its_own_tilted_grid(checkpoint: Path, cropped_ct: Path, tmp_path: Path) -> None:
    """A scan acquired tilted (rotated affine, same voxels) gets the same prediction voxel for voxel,
    written with the tilted affine, qform and sform as read."""
    straight = nib.load(cropped_ct)
    tilted = rotated_about_z(straight.affine, 20.0)
    image = nib.Nifti1Image(np.asanyarray(straight.dataobj), tilted)
    image.set_qform(tilted, code=1)
    image.set_sform(tilted, code=1)
    inputs = tmp_path / "in"
    inputs.mkdir()
    nib.save(image, inputs / "oblique.nii.gz")
    predictor = Predictor(load_checkpoint(checkpoint), FP32)
    ref, out = predictor(cropped_ct), predictor(inputs / "oblique.nii.gz")
    np.testing.assert_allclose(out.input_affine, tilted, atol=1e-4)
    assert_same_prediction(out.probabilities, out.labels, ref.probabilities, ref.labels, atol=1e-4)
    predict_cases(predictor, find_inputs(inputs), tmp_path / "out")
    seg = nib.load(tmp_path / "out" / "oblique_seg.nii.gz")
    np.testing.assert_allclose(seg.affine, tilted, atol=1e-4)
    np.testing.assert_allclose(seg.get_qform(), tilted, atol=1e-4)
    assert (int(seg.header["qform_code"]), int(seg.header["sform_code"])) == (1, 1)
    np.testing.assert_array_equal(np.asanyarray(seg.dataobj), out.labels)


@pytest.mark.parametrize("used", ["sform", "qform"])
def test_the_predictor_reads_the_matrix_nibabel_reads_when_qform_and_sform_differ(
    used: str, checkpoint: Path, cropped_ct: Path, tmp_path: Path
) -> None:
    """NIfTI's rule (nibabel's too): the sform when its code is set, else the qform. The other matrix
    here stores the voxels in another order, so reading it would mirror the scan (another prediction)."""
    straight = nib.load(cropped_ct)
    true = straight.affine
    mirrored = true @ nib.orientations.inv_ornt_aff([[0, -1], [1, 1], [2, 1]], straight.shape)
    image = nib.Nifti1Image(np.asanyarray(straight.dataobj), None)
    if used == "sform":
        image.set_sform(true, code=2)
        image.set_qform(mirrored, code=1)
    else:
        image.set_sform(mirrored, code=0)
        image.set_qform(true, code=1)
    nib.save(image, tmp_path / "both.nii.gz")
    assert np.allclose(nib.load(tmp_path / "both.nii.gz").affine, true)
    predictor = Predictor(load_checkpoint(checkpoint), FP32)
    ref, out = predictor(cropped_ct), predictor(tmp_path / "both.nii.gz")
    np.testing.assert_allclose(out.input_affine, true, atol=1e-4)
    assert_same_prediction(out.probabilities, out.labels, ref.probabilities, ref.labels, atol=1e-4)


@pytest.mark.slow  # the command end to end over whole volumes
def test_infer_folder_writes_outputs_skips_bad_cases_and_continues(
    checkpoint: Path, cropped_ct: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    lps = nib.load(stored_as(cropped_ct, "LPS", tmp_path / "lps.nii.gz"))
    lps.set_qform(lps.affine, code=1)  # both matrices set, with different codes: each must be mirrored
    lps.set_sform(lps.affine, code=4)
    good = inputs / "ct_a.nii.gz"
    nib.save(lps, good)
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
    assert (int(seg.header["qform_code"]), int(seg.header["sform_code"])) == (1, 4)
    np.testing.assert_allclose(seg.get_qform(), src.get_qform(), atol=1e-5)
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


def newer_format(ckpt: dict) -> dict:
    return {**ckpt, "attnunet": {**ckpt["attnunet"], "format": ckpt["attnunet"]["format"] + 1}}


def wider_model_described(ckpt: dict) -> dict:
    model = {**ckpt["attnunet"]["model"], "channels": [8, 16, 32]}
    return {**ckpt, "attnunet": {**ckpt["attnunet"], "model": model}}


def a_tensor_missing(ckpt: dict) -> dict:
    return {**ckpt, "state_dict": {k: v for k, v in ckpt["state_dict"].items() if k != "net.head.weight"}}


@pytest.mark.parametrize(
    "change, problem",
    [
        (newer_format, r"checkpoint format 2 is newer than this attnunet understands"),
        (wider_model_described, r"weights do not match the described model \(Error\(s\) in loading state_dict"),
        (a_tensor_missing, r"weights do not match the described model \(Error\(s\) in loading state_dict"),
        (lambda ckpt: list(ckpt["state_dict"].values()), r"not a checkpoint \(expected a dictionary\)"),
    ],
    ids=["newer format", "weights of another model", "a tensor missing", "not a dictionary"],
)
def test_checkpoint_that_does_not_describe_its_weights_is_refused(change, problem: str, checkpoint: Path, tmp_path):
    path = tmp_path / "changed.ckpt"
    torch.save(change(torch.load(checkpoint, weights_only=True)), path)
    with pytest.raises(AttnUNetError, match=rf"^{path}: {problem}") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kept", [0.5, 0.01])
def test_truncated_checkpoint_is_an_unreadable_file(kept: float, checkpoint: Path, tmp_path: Path) -> None:
    whole = checkpoint.read_bytes()
    path = tmp_path / "cut.ckpt"
    path.write_bytes(whole[: int(len(whole) * kept)])
    with pytest.raises(AttnUNetError, match=rf"^{path}: unreadable checkpoint \((OSError|RuntimeError): ") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


def test_empty_checkpoint_file_is_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"")
    with pytest.raises(AttnUNetError, match=rf"^{path}: unreadable checkpoint \((EOFError|RuntimeError)") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


def test_resume_auto_continues_a_run_that_has_a_last_checkpoint_and_else_starts_fresh(tmp_path: Path) -> None:
    """``ckpt_path=auto`` is for jobs a scheduler may requeue: the first start finds nothing."""
    assert resolve_checkpoint("auto", tmp_path) is None
    assert resolve_checkpoint(None, tmp_path) is None
    with pytest.raises(AttnUNetError, match=rf"^{tmp_path}/checkpoints/last.ckpt: checkpoint to resume from does not"):
        resolve_checkpoint("last", tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"saved")
    assert resolve_checkpoint("auto", tmp_path) == resolve_checkpoint("last", tmp_path) == str(last)


@pytest.mark.slow  # the command end to end over whole volumes
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


@pytest.mark.slow  # the command end to end over whole volumes
def test_dicom_series_gives_the_same_prediction_as_the_nifti(
    checkpoint: Path, cropped_ct: Path, tmp_path: Path
) -> None:
    series = write_series(cropped_ct, tmp_path / "in" / "patient1" / "series1")
    out = tmp_path / "out"
    args = [f"ckpt_path={checkpoint}", f"input={tmp_path / 'in'}", f"output_dir={out}", "precision=fp32"]
    result = run_cli("infer", [*args, "save_preview=true", "save_probabilities=true"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    preview = np.asarray(Image.open(out / "patient1_series1_preview.png"))
    assert preview.shape[0] > overlays.SHORT_SIDE and preview.std() > 10  # drawn from the series read once
    seg = nib.load(out / "patient1_series1_seg.nii.gz")
    ref = Predictor(load_checkpoint(checkpoint), FP32)(cropped_ct)
    np.testing.assert_allclose(seg.affine, nib.load(cropped_ct).affine, atol=1e-3)
    assert seg.shape == ref.labels.shape
    # The series stores the same HU values as the NIfTI, so the prediction is the same.
    probabilities = np.moveaxis(nib.load(out / "patient1_series1_probabilities.nii.gz").get_fdata(), -1, 0)
    assert_same_prediction(probabilities, np.asanyarray(seg.dataobj), ref.probabilities, ref.labels, atol=1e-4)
    assert series.is_dir() and len(list(series.iterdir())) == nib.load(cropped_ct).shape[2]  # input untouched


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


def test_each_shard_takes_every_nth_case_from_the_setting_or_torchruns_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = ["a", "b", "c", "d", "e"]
    setting = OmegaConf.create({"shard": None})
    assert my_share(cases, setting) == cases  # one process
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert my_share(cases, setting) == ["b", "d"]  # torchrun's second worker
    assert my_share(cases, OmegaConf.create({"shard": "0/3"})) == ["a", "d"]  # the setting wins
    assert my_share(cases, OmegaConf.create({"shard": "2/3"})) == ["c"]
    with pytest.raises(AttnUNetError, match=r"^shard must be i/n with 0 <= i < n, got 3/3$"):
        my_share(cases, OmegaConf.create({"shard": "3/3"}))


def test_flip_tta_averages_the_unflipped_predictions(checkpoint: Path, cropped_ct: Path) -> None:
    model = load_checkpoint(checkpoint)
    plain = Predictor(model, PredictorSettings(precision="fp32"))
    tta = Predictor(model, PredictorSettings(precision="fp32", tta=True))
    x = plain.preprocess(cropped_ct).as_tensor()[None]
    with torch.inference_mode():
        expected = torch.zeros(1, 2, *x.shape[2:])
        for n in range(4):
            for axes in itertools.combinations((2, 3, 4), n):
                logits = predict_logits(plain.net, torch.flip(x, axes) if axes else x, plain.window)
                expected += torch.flip(torch.softmax(logits, 1), axes) if axes else torch.softmax(logits, 1)
        got, _ = tta._probabilities(x)
    torch.testing.assert_close(got, expected / 8, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, plain._probabilities(x)[0], atol=1e-3)


def test_flip_tta_flips_only_along_the_axes_the_model_was_trained_mirrored(cropped_ct: Path, tmp_path: Path) -> None:
    one_axis = load_checkpoint(make_checkpoint(tmp_path / "x.ckpt", flip_axes=(0,)))
    plain = Predictor(one_axis, PredictorSettings(precision="fp32"))
    tta = Predictor(one_axis, PredictorSettings(precision="fp32", tta=True))
    x = plain.preprocess(cropped_ct).as_tensor()[None]
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


def test_largest_component_leaves_one_blob_per_label(checkpoint: Path, cropped_ct: Path) -> None:
    model = load_checkpoint(checkpoint)
    raw = Predictor(model, PredictorSettings(precision="fp32"))(cropped_ct).labels
    kept = Predictor(model, PredictorSettings(precision="fp32", largest_component=True))(cropped_ct).labels
    full = np.ones((3, 3, 3))  # 26-connectivity, as MONAI's transform uses by default
    assert ndimage.label(raw == 1, full)[1] > 1  # the untrained net predicts scattered blobs
    assert ndimage.label(kept == 1, full)[1] == 1
    sizes = np.bincount(ndimage.label(raw == 1, full)[0].ravel())[1:]
    assert (kept == 1).sum() == sizes.max()
    # auto (the default) follows the choice that training stored in the checkpoint.
    model.meta["postprocessing"] = {"largest_component": [1]}
    np.testing.assert_array_equal(Predictor(model, PredictorSettings(precision="fp32"))(cropped_ct).labels, kept)


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
