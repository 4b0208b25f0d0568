"""A folder run reads the next case while the current one is predicted and written, when the
network runs on an accelerator; on the CPU it reads each case when it comes."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

from attnunet.inference.predictor import Prediction, PredictorSettings
from attnunet.inference.runner import predict_cases

SHAPE = (6, 5, 4)


class RecordingPredictor:
    """Stands in for a Predictor: ``predict`` of a case waits (up to a timeout) until the next
    case's ``read`` has started, which only happens when the runner reads ahead."""

    def __init__(self, paths: list[Path], device: str = "cuda") -> None:
        self.settings = PredictorSettings()
        self.device = torch.device(device)
        self.model = SimpleNamespace(net=SimpleNamespace(attention_names=()), labels={0: "bg", 1: "organ"})
        self.started = {p: threading.Event() for p in paths}
        self.order = list(paths)
        self.events: list[str] = []

    def read(self, path: Path) -> dict[str, Any]:
        self.events.append(f"read {Path(path).name}")
        self.started[Path(path)].set()
        if Path(path).name.startswith("bad"):
            raise ValueError("not a volume")
        return {"path": Path(path)}

    def predict(self, data: dict[str, Any]) -> Prediction:
        path = data["path"]
        later = self.order[self.order.index(path) + 1 :]
        if later and self.device.type != "cpu":  # the next case must be under way before this one ends
            assert self.started[later[0]].wait(timeout=10), f"{later[0].name} was not read ahead"
        self.events.append(f"predict {path.name}")
        return Prediction(
            labels=np.ones(SHAPE, np.uint8), box_probabilities=np.zeros((2, *SHAPE), np.float32), input_affine=np.eye(4)
        )


@pytest.fixture
def folder(tmp_path: Path) -> list[Path]:
    paths = []
    for name in ("a", "bad", "c"):
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), np.eye(4)), path)
        paths.append(path)
    return paths


def test_next_case_is_read_while_the_current_one_is_predicted(folder: list[Path], tmp_path: Path) -> None:
    predictor = RecordingPredictor(folder)
    report = predict_cases(predictor, [(p.name[:-7], p) for p in folder], tmp_path / "out")  # type: ignore[arg-type]
    assert report.done == ["a", "c"] and list(report.failed) == ["bad"]  # a bad read fails only its case
    assert "not a volume" in report.failed["bad"]
    assert predictor.events.index("read bad.nii.gz") < predictor.events.index("predict a.nii.gz")
    for name in ("a", "c"):
        np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "out" / f"{name}_seg.nii.gz").dataobj), 1)


def test_a_bad_first_case_fails_alone(folder: list[Path], tmp_path: Path) -> None:
    first_bad = [folder[1], folder[0], folder[2]]  # the first case is read in the calling thread
    predictor = RecordingPredictor(first_bad)
    report = predict_cases(predictor, [(p.name[:-7], p) for p in first_bad], tmp_path / "out")  # type: ignore[arg-type]
    assert report.done == ["a", "c"] and "not a volume" in report.failed["bad"]


def test_finished_cases_are_not_read_on_resume(folder: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), np.eye(4)), out / "a_seg.nii.gz")
    good = [folder[0], folder[2]]
    predictor = RecordingPredictor(good)
    report = predict_cases(predictor, [(p.name[:-7], p) for p in good], out, resume=True)  # type: ignore[arg-type]
    assert report.skipped == ["a"] and report.done == ["c"]
    assert predictor.events == ["read c.nii.gz", "predict c.nii.gz"]


def test_on_the_cpu_each_case_is_read_when_it_comes(folder: list[Path], tmp_path: Path) -> None:
    predictor = RecordingPredictor(folder, device="cpu")
    report = predict_cases(predictor, [(p.name[:-7], p) for p in folder], tmp_path / "out")  # type: ignore[arg-type]
    assert report.done == ["a", "c"] and list(report.failed) == ["bad"]
    assert predictor.events == [
        "read a.nii.gz",
        "predict a.nii.gz",
        "read bad.nii.gz",
        "read c.nii.gz",
        "predict c.nii.gz",
    ]
