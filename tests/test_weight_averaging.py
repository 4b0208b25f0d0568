"""The EMA callback keeps its averaged copy on the model's device."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging

from attnunet.training.weight_averaging import EMAWeights


class TinyModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)


def average_devices(callback: EMAWeightAveraging) -> set[str]:
    """Devices of the averaged weights and of the averaging count, read as a checkpoint save does."""
    module = TinyModule()
    callback.setup(None, module, "fit")  # type: ignore[arg-type]  # builds the average on the host
    module.to("meta")  # as the strategy moves the model to its device afterwards (any non-host device)
    callback.on_fit_start(None, module)  # type: ignore[arg-type]
    checkpoint = {"state_dict": module.state_dict()}
    callback.on_save_checkpoint(None, module, checkpoint)  # type: ignore[arg-type]
    saved = [*checkpoint["state_dict"].values(), *checkpoint["averaging_state"].values()]
    return {t.device.type for t in saved}


def test_the_average_moves_to_the_models_device_when_fitting_starts() -> None:
    assert average_devices(EMAWeights(decay=0.9)) == {"meta"}
    assert average_devices(EMAWeightAveraging(decay=0.9)) == {"cpu"}  # what Lightning alone leaves behind
