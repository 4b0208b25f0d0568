"""Every ``auto`` setting is resolved once, in utils/hardware.py, and the predictor holds concrete values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.predictor import Predictor, PredictorSettings
from attnunet.utils import hardware
from tests.helpers import CT, make_checkpoint, run_cli

LABELS = {0: "background", 1: "pancreas"}


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_native_bf16_for_each_job(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
    assert hardware.resolve_precision("auto", "cpu", "train") == ("bf16-mixed" if native else "32-true")
    assert hardware.resolve_precision("auto", "cpu", "infer") == ("bf16" if native else "fp32")
    assert hardware.resolve_precision("fp32", "cpu", "infer") == "fp32"  # explicit values pass through
    assert hardware.resolve_precision(16, "cuda", "train") == 16


def test_auto_memory_format_differs_between_training_and_inference() -> None:
    assert hardware.resolve_channels_last("auto", "cpu", "infer") is True
    assert hardware.resolve_channels_last("auto", "cuda", "infer") is False
    assert hardware.resolve_channels_last("auto", "cpu", "train") is False
    assert hardware.resolve_channels_last(True, "cuda", "train") is True


def test_auto_device_takes_this_process_gpu_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert hardware.resolve_device("auto") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N, got 'gpu0'"):
        hardware.resolve_device("gpu0")


def test_predictor_resolves_auto_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    predictor = Predictor(
        load_checkpoint(make_checkpoint(tmp_path / "m.ckpt", LABELS)), PredictorSettings(device="cpu")
    )
    assert predictor.settings.precision == "fp32" and predictor.settings.channels_last is True
    assert predictor.settings.device == "cpu"
    assert next(predictor.net.parameters()).is_contiguous(memory_format=torch.channels_last_3d)
    with pytest.raises(ValueError, match="precision must be auto, bf16 or fp32, got 'fp16'"):
        Predictor(predictor.model, PredictorSettings(device="cpu", precision="fp16"))


@pytest.mark.parametrize(
    "setting, message",
    [
        ("precision=fp16", "error: predictor: precision must be auto, bf16 or fp32, got 'fp16'"),
        ("device=gpu0", "error: predictor: device must be auto, cpu, cuda or cuda:N, got 'gpu0'"),
    ],
)
def test_bad_predictor_setting_is_a_one_line_error(setting: str, message: str, tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt", LABELS)
    result = run_cli("infer", [f"ckpt_path={ckpt}", f"input={CT}", f"output_dir={tmp_path / 'out'}", setting], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
