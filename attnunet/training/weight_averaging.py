"""Lightning's EMA callback with the averaged weights kept beside the model."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EMAWeightAveraging


class EMAWeights(EMAWeightAveraging):
    """:class:`~pytorch_lightning.callbacks.EMAWeightAveraging` whose averaged copy lives on the
    model's device.

    Lightning builds that copy in ``setup``, before the strategy moves the model to its device, so
    on a GPU the average would stay in host memory and every step would pull all weights to the
    host to update it (correct, only slow). Moving it once when fitting starts, after a resumed
    checkpoint has been restored into it, is all this subclass adds.
    """

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._average_model is not None:
            self._average_model.to(pl_module.device)
