"""Several models as one: the softmax of every member (after TTA) averaged before the argmax, and
the predictive entropy of that average as a per-voxel uncertainty.

An ensemble of the k cross-validation folds is nnU-Net's usual way to its best accuracy; the
entropy of the averaged softmax is high where the members (or the flipped copies of one member)
disagree or are unsure, so cases can be sorted for review by it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import LoadedModel
from attnunet.inference.predictor import Predictor, PredictorSettings

# Voxels counted in a case's mean uncertainty: where the averaged softmax gives foreground at least
# this probability (the region a reviewer looks at; elsewhere the entropy is ~0 and would only dilute).
UNCERTAIN_REGION = 0.05


class EnsemblePredictor(Predictor):
    """A :class:`Predictor` over several models that share labels, preprocessing and window size
    (checked where they are loaded). Preprocessing, regridding and the argmax run once; only the
    network part runs per member. Attention maps, when asked for, are the first member's."""

    def __init__(self, models: Sequence[LoadedModel], settings: PredictorSettings | None = None) -> None:
        super().__init__(models[0], settings)
        self.models = list(models)  # replaces the base class's [models[0]]
        # Each member prepared as the base class prepares its one network (device, format, compile),
        # and with TTA checked for the flips it was trained with.
        members = [self, *(Predictor(m, self.settings) for m in models[1:])]
        self.nets = [p.net for p in members]
        if self.settings.tta:  # flips every member was trained with
            self.flip_axes = sorted(set.intersection(*(set(p.flip_axes) for p in members)))
            if not self.flip_axes:
                raise AttnUNetError("tta=true: the ensemble's members were trained mirrored along no common axis")

    def _probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean over members of their (TTA-averaged) softmax ``(1, K, *S)``; the first member's maps."""
        total: torch.Tensor | None = None
        maps: dict[str, torch.Tensor] = {}
        try:
            for i, net in enumerate(self.nets):
                self.net = net
                probs, member_maps = super()._probabilities(x)
                maps = member_maps if i == 0 else maps
                total = probs if total is None else total.add_(probs)
        finally:
            self.net = self.nets[0]
        assert total is not None
        return total.div_(len(self.nets)), maps


def predictive_entropy(probabilities: np.ndarray) -> np.ndarray:
    """``(K, X, Y, Z)`` class probabilities -> ``(X, Y, Z)`` float32 entropy in nats (0 .. ln K)."""
    p = np.clip(probabilities, 1e-12, 1.0)
    return (-(probabilities * np.log(p)).sum(0)).astype(np.float32)


def mean_uncertainty(probabilities: np.ndarray) -> float:
    """A case's mean entropy over the voxels with foreground probability >= :data:`UNCERTAIN_REGION`
    (0 when there are none): one number to sort cases for review."""
    region = 1.0 - probabilities[0] >= UNCERTAIN_REGION
    return float(predictive_entropy(probabilities)[region].mean()) if region.any() else 0.0
