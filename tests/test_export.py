"""attnunet-export: ONNX / TorchScript files and their sidecar run through the unchanged Predictor."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.export import FORMATS, export_model, load_exported, sidecar_path
from attnunet.inference.predictor import Predictor, PredictorSettings
from tests.helpers import CT, SMALL_NET, assert_same_prediction, make_checkpoint, run_cli

LABELS = {0: "background", 1: "pancreas"}
FP32 = PredictorSettings(device="cpu", precision="fp32")


def needs_runtime(fmt: str) -> None:
    """ONNX files need the onnx extra (in the test extra); TorchScript runs on torch alone."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="format=onnx needs the onnx extra: pip install attnunet[onnx]")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt", LABELS, spacing=(6.0, 6.0, 6.0))


@pytest.fixture(scope="module")
def exported(checkpoint: Path) -> Callable[[str], Path]:
    """``fmt -> model file`` of the checkpoint exported as ``fmt`` (each format written once, on first use)."""
    files: dict[str, Path] = {}

    def model_file(fmt: str) -> Path:
        needs_runtime(fmt)
        if fmt not in files:
            files[fmt] = export_model(checkpoint, fmt, checkpoint.parent / "exported" / f"model.{fmt}")
        return files[fmt]

    return model_file


@pytest.fixture(scope="module")
def reference(checkpoint: Path, cropped_ct: Path):
    return Predictor(load_checkpoint(checkpoint), FP32)(cropped_ct)


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and isinstance(e.value, AttnUNetError)
    return text


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_model_predicts_like_the_checkpoint_on_real_ct(
    fmt: str, exported: Callable[[str], Path], reference, cropped_ct: Path
) -> None:
    model = load_exported(exported(fmt))
    assert model.labels == LABELS
    assert model.sliding_window.roi_size == (32, 32, 32)
    assert model.preprocessing.spacing == (6.0, 6.0, 6.0)
    pred = Predictor(model, FP32)(cropped_ct)
    assert pred.labels.shape == nib.load(cropped_ct).shape and pred.labels.dtype == np.uint8
    assert_same_prediction(pred.probabilities, pred.labels, reference.probabilities, reference.labels, atol=1e-4)
    np.testing.assert_allclose(pred.input_affine, reference.input_affine)


@pytest.mark.parametrize("fmt", FORMATS)
def test_sidecar_is_plain_json_describing_the_model(
    fmt: str, exported: Callable[[str], Path], checkpoint: Path
) -> None:
    info = json.loads(sidecar_path(exported(fmt)).read_text())
    ckpt = load_checkpoint(checkpoint)
    assert info["format"] == fmt and info["model_file"] == exported(fmt).name
    assert info["labels"] == {"0": "background", "1": "pancreas"}
    assert info["preprocessing"] == ckpt.preprocessing.to_dict()
    assert info["sliding_window"] == ckpt.sliding_window.to_dict()
    assert info["model"] == ckpt.meta["model"]
    assert info["flip_axes"] == ckpt.meta["flip_axes"] == [0, 1, 2]
    assert load_exported(exported(fmt)).meta["flip_axes"] == [0, 1, 2]  # so flip TTA may use them
    assert info["input"]["shape"] == ["batch", 1, 32, 32, 32]
    assert info["output"]["shape"] == ["batch", 2, 32, 32, 32]
    assert info["verification"]["max_abs_logit_diff"] < 1e-3
    assert len(info["sha256"]) == 64


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_net_has_the_predictor_interface(fmt: str, exported: Callable[[str], Path], checkpoint: Path) -> None:
    net = load_exported(exported(fmt)).net
    assert net.spatial_dims == 3
    net = net.to("cpu", memory_format=torch.channels_last_3d).eval()
    torch_net = load_checkpoint(checkpoint).net
    for batch in (1, 3):  # dynamic batch axis: the sliding window's last batch may be short
        x = torch.rand(batch, 1, 32, 32, 32)
        with torch.inference_mode():
            got, want = net(x), torch_net(x)
        assert got.shape == (batch, 2, 32, 32, 32) and got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    with pytest.raises(AttnUNetError) as e:
        net(torch.rand(1, 1, 16, 32, 32))
    assert "windows of [32, 32, 32]" in one_line(e)
    with pytest.raises(AttnUNetError) as e:
        Predictor(load_exported(exported(fmt)), PredictorSettings(device="cpu", attention=True))(CT)
    assert "logits only" in one_line(e)


def test_bad_exports_are_one_line_errors(exported: Callable[[str], Path], checkpoint: Path, tmp_path: Path) -> None:
    """Sidecar and model-file checks, on a TorchScript export (they do not depend on the format)."""
    with pytest.raises(AttnUNetError) as e:
        export_model(checkpoint, "tflite", tmp_path / "m.tflite")
    assert "unknown format 'tflite'" in one_line(e)
    with pytest.raises(AttnUNetError) as e:
        load_exported(tmp_path / "absent.onnx")
    assert "not found" in one_line(e)

    model = tmp_path / "m.torchscript.pt"
    shutil.copy(exported("torchscript"), model)
    with pytest.raises(AttnUNetError) as e:
        load_exported(model)
    assert "no sidecar m.torchscript.pt.json" in one_line(e)

    good = json.loads(sidecar_path(exported("torchscript")).read_text())
    sidecar = sidecar_path(model)
    cases = {
        "{not json": "unreadable sidecar JSON",
        json.dumps([1, 2]): "not an attnunet export sidecar",
        json.dumps({k: v for k, v in good.items() if k != "labels"}): "malformed sidecar (KeyError",
        json.dumps({**good, "preprocessing": {"spacing": "x"}}): "malformed sidecar",
        json.dumps({**good, "format": "tflite"}): "unknown format 'tflite'",
        json.dumps({**good, "attnunet_export": 99}): "newer than this attnunet",
        json.dumps({**good, "sha256": "0" * 64}): "does not match its sidecar",
    }
    for text, expected in cases.items():
        sidecar.write_text(text)
        with pytest.raises(AttnUNetError) as e:
            load_exported(model)
        assert expected in one_line(e), (text[:40], str(e.value))

    # A model file that is not what the sidecar describes (truncated, replaced) is refused before it runs.
    sidecar.write_text(json.dumps(good))
    model.write_bytes(exported("torchscript").read_bytes()[:1000])
    with pytest.raises(AttnUNetError) as e:
        load_exported(model)
    assert "SHA-256 differs" in one_line(e)


def test_export_never_overwrites_the_checkpoint(checkpoint: Path) -> None:
    with pytest.raises(AttnUNetError) as e:
        export_model(checkpoint, "torchscript", checkpoint)
    assert "overwrite the checkpoint" in one_line(e)


@pytest.mark.slow
def test_export_command(checkpoint: Path, tmp_path: Path) -> None:
    needs_runtime("onnx")
    ckpt = shutil.copy(checkpoint, tmp_path / "best.ckpt")
    done = run_cli("export", [f"ckpt_path={ckpt}", "format=onnx"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "best.onnx").is_file() and (tmp_path / "best.onnx.json").is_file()
    assert "best.onnx" in done.stdout.strip().splitlines()[-1]
    bad = run_cli("export", [f"ckpt_path={ckpt}", "format=tflite"], tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == "error: unknown format 'tflite'; known: onnx, torchscript"


def test_the_largest_component_choice_travels_with_the_export(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "model.ckpt", LABELS, spacing=(6.0, 6.0, 6.0))
    ckpt = torch.load(path, weights_only=True)
    ckpt["attnunet"]["postprocessing"] = {"largest_component": [1], "val_dice": {"1": 0.5}}
    torch.save(ckpt, path)
    model = load_exported(export_model(path, "torchscript", tmp_path / "model.torchscript"))
    assert model.meta["postprocessing"]["largest_component"] == [1]
    assert Predictor(model, FP32).largest_component_labels == [1]


# The architectures besides the default 3D Attention U-Net: (model config, sliding window).
VARIANTS = {
    "2d": ({**SMALL_NET, "spatial_dims": 2}, (32, 32, 1)),
    "gated_bottleneck": ({**SMALL_NET, "bottleneck_attention": "gated", "bottleneck_heads": 2}, (32, 32, 32)),
    "plain_unet": ({**SMALL_NET, "attention": False}, (32, 32, 32)),
}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_architecture_exports_and_predicts_like_its_checkpoint(
    variant: str, fmt: str, cropped_ct: Path, tmp_path: Path
) -> None:
    needs_runtime(fmt)
    model, window = VARIANTS[variant]
    ckpt = make_checkpoint(tmp_path / "m.ckpt", LABELS, spacing=(6.0, 6.0, 6.0), model=model, roi_size=window)
    exported = load_exported(export_model(ckpt, fmt, tmp_path / f"m.{fmt}"))
    assert exported.net.spatial_dims == (2 if variant == "2d" else 3)
    assert exported.meta["model"] == load_checkpoint(ckpt).meta["model"]
    reference = Predictor(load_checkpoint(ckpt), FP32)(cropped_ct)
    pred = Predictor(exported, FP32)(cropped_ct)
    assert_same_prediction(pred.probabilities, pred.labels, reference.probabilities, reference.labels, atol=1e-4)
