"""Where the gates look: mean alpha inside a reference organ against the mean over the body.

The "attention contrast" of a gate on one case is ``mean alpha over the organ / mean alpha over the
body``: 1 means the gate passes the organ's skip features no more than any other body voxel's; a
gate concentrating on the organ scores well above 1. The body is every voxel above :data:`BODY_HU`
inside the region the network ran on (the body crop), so the air and couch around a patient (where
the network never runs, alpha 0) do not inflate the figure. The training callback logs a related
scalar on validation patches (:class:`~attnunet.training.callbacks.AttentionMapLogger`); this one
scores whole volumes after the same inference as ``attnunet-infer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnunet.evaluation.report import LabelMap, on_reference_grid
from attnunet.inference.predictor import Prediction

BODY_HU = -500.0  # fat is about -100 HU and lung about -850: this keeps soft tissue and fat, drops air
COLUMN_PREFIX = {"organ": "alpha_organ", "body": "alpha_body", "contrast": "attention_contrast"}


@dataclass(frozen=True)
class RealCase:
    """A real CT and an organ mask (nonzero: the organ) on its grid, to read the gates' contrast on."""

    image: Path
    mask: Path


def gate_contrast(
    prediction: Prediction, organ: np.ndarray, reference: LabelMap, image_path: Path, ref_path: Path
) -> dict[str, dict[str, float]]:
    """Per gate, ``{"organ": mean alpha over organ, "body": mean alpha over the body, "contrast":
    their ratio}`` (NaN for an empty organ or a body of alpha 0).

    ``prediction`` must hold gate maps and the input volume (``PredictorSettings(attention=True,
    keep_input=True)``); ``organ`` is a boolean ``(X, Y, Z)`` mask on ``reference``'s grid, onto
    which alpha and the input are put first (:func:`~attnunet.evaluation.report.on_reference_grid`)."""
    if not prediction.attention:
        return {}
    if prediction.input_hu is None:
        raise ValueError("gate_contrast needs the input volume: predict with keep_input=True")
    affine = prediction.input_affine
    # Only where the network ran: the couch and the air around the body are cut off.
    body_on_input = (prediction.input_hu > BODY_HU) & prediction.network_region()
    body = on_reference_grid(body_on_input, affine, image_path, reference, ref_path)
    figures = {}
    for gate in prediction.attention:
        alpha = on_reference_grid(prediction.alpha(gate), affine, image_path, reference, ref_path)
        inside = float(alpha[organ].mean()) if organ.any() else float("nan")
        outside = float(alpha[body].mean())
        figures[gate] = {
            "organ": inside,
            "body": outside,
            "contrast": inside / outside if outside > 0 else float("nan"),
        }
    return figures


def contrast_columns(prediction: Prediction, reference: LabelMap, image_path: Path, ref_path: Path) -> dict[str, float]:
    """``alpha_organ/<gate>``, ``alpha_body/<gate>`` and ``attention_contrast/<gate>`` for one case,
    the organ being every foreground voxel of ``reference`` (no columns for a model without gates)."""
    figures = gate_contrast(prediction, reference.array > 0, reference, image_path, ref_path)
    return {f"{COLUMN_PREFIX[key]}/{gate}": value for gate, f in figures.items() for key, value in f.items()}
