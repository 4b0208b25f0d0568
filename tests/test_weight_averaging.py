"""The EMA callback keeps its averaged copy on the model's device."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch.optim.swa_utils import AveragedModel

from attnunet.training.weight_averaging import EMAWeights


def test_the_average_moves_to_the_models_device_when_fitting_starts() -> None:
    callback = EMAWeights(decay=0.9)
    callback._average_model = AveragedModel(torch.nn.Linear(2, 2))  # as setup() builds it: on the host
    model = SimpleNamespace(device=torch.device("meta"))  # any device other than the host's will do
    callback.on_fit_start(None, model)  # type: ignore[arg-type]
    assert {p.device.type for p in callback._average_model.parameters()} == {"meta"}
    assert callback._average_model.n_averaged.device.type == "meta"
