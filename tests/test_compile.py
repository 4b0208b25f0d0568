"""``performance.compile`` / ``compile``: torch.compile changes neither results nor checkpoint keys."""

from __future__ import annotations

import warnings

import pytest
import torch

from attnunet.training.module import SegmentationModule

pytestmark = pytest.mark.slow  # inductor compiles C++ kernels: tens of seconds on 2 cores


def tiny_module(compile: bool) -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(
        model={"channels": [4, 8]},
        labels={0: "background", 1: "pancreas"},
        preprocessing={},
        sliding_window={"roi_size": [16, 16, 16]},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True},
        compile=compile,
    )


def test_compiled_training_and_inference_match_eager() -> None:
    eager, compiled = tiny_module(False), tiny_module(True)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    batch = {"image": torch.rand(2, 1, 16, 16, 16), "label": (torch.rand(2, 1, 16, 16, 16) > 0.7).long()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        loss_eager = eager.training_step(batch, 0)
        loss_compiled = compiled.training_step(batch, 0)
    assert torch.allclose(loss_eager, loss_compiled, atol=1e-5)
    eager.eval()
    compiled.eval()
    with torch.inference_mode():
        assert torch.allclose(eager(batch["image"]), compiled(batch["image"]), atol=1e-5)
