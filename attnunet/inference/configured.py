"""A :class:`Predictor` from the ``predictor``/``performance`` config keys that infer and evaluate share."""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig

from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import LoadedModel, load_checkpoint
from attnunet.inference.predictor import Predictor, PredictorSettings


def load_model(cfg: DictConfig) -> LoadedModel:
    """The model source: an exported file (``model_file=``, ONNX or TorchScript) or a checkpoint."""
    if cfg.get("model_file"):
        from attnunet.inference.export import load_exported  # noqa: PLC0415 - only for exported models

        return load_exported(cfg.model_file)
    if not cfg.get("ckpt_path"):
        raise AttnUNetError("give ckpt_path=<checkpoint> or model_file=<exported .onnx/.pt>")
    return load_checkpoint(cfg.ckpt_path)


def predictor_from_config(cfg: DictConfig, attention: bool = False) -> Predictor:
    """The model plus the run-time settings shared by infer and evaluate."""
    if attention and cfg.get("model_file"):
        raise AttnUNetError("an exported model gives labels only; attention maps and previews need ckpt_path=")
    model = load_model(cfg)
    device = cfg.device
    if device == "auto" and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        device = f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"  # one GPU per rank
    settings = PredictorSettings(
        device=device,
        precision=cfg.precision,
        overlap=cfg.overlap,
        sw_batch_size=cfg.sw_batch_size,
        tta=cfg.tta,
        largest_component=cfg.largest_component,
        attention=attention,
        channels_last=cfg.performance.channels_last,
        compile=bool(cfg.performance.compile),
    )
    return Predictor(model, settings)
