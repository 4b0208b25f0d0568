"""A :class:`Predictor` from the ``predictor``/``performance`` config keys that infer and evaluate share."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import LoadedModel, load_checkpoint
from attnunet.inference.ensemble import EnsemblePredictor
from attnunet.inference.predictor import Predictor, PredictorSettings

log = logging.getLogger(__name__)


def model_sources(cfg: DictConfig) -> list[Path]:
    """The files to run: ``model_file=`` (one exported file), ``ckpt_path=`` (a checkpoint or a list of
    them: an ensemble) or ``ckpt_dir=`` (every ``checkpoints/best.ckpt`` below it, e.g. a k-fold sweep)."""
    if cfg.get("model_file"):
        return [Path(cfg.model_file).expanduser()]
    if cfg.get("ckpt_dir"):
        folder = Path(cfg.ckpt_dir).expanduser()
        found = sorted(folder.rglob("checkpoints/best.ckpt"))
        if not found:
            raise AttnUNetError("no checkpoints/best.ckpt below this folder", folder)
        return found
    ckpt = cfg.get("ckpt_path")
    if not ckpt:
        raise AttnUNetError("give ckpt_path=<checkpoint(s)>, ckpt_dir=<sweep folder> or model_file=<exported file>")
    paths = [ckpt] if isinstance(ckpt, str | Path) else list(ckpt)
    return [Path(p).expanduser() for p in paths]


def load_models(cfg: DictConfig) -> list[LoadedModel]:
    """Every model of the configured source; an ensemble's members must share the label map, the
    preprocessing and the sliding-window size (their softmax is averaged voxel by voxel)."""
    if cfg.get("model_file"):
        from attnunet.inference.export import load_exported  # noqa: PLC0415 - only for exported models

        return [load_exported(cfg.model_file)]
    sources = model_sources(cfg)
    models = [load_checkpoint(p) for p in sources]
    first = models[0]
    for path, model in zip(sources[1:], models[1:]):
        for what, mine, theirs in (
            ("label map", model.labels, first.labels),
            ("preprocessing", model.preprocessing, first.preprocessing),
            ("sliding-window size", model.sliding_window.roi_size, first.sliding_window.roi_size),
        ):
            if mine != theirs:
                raise AttnUNetError(f"{what} differs from that of {sources[0]}; an ensemble needs the same", path)
    return models


def predictor_from_config(cfg: DictConfig, attention: bool = False, keep_input: bool = False) -> Predictor:
    """The model (or the ensemble) plus the run-time settings shared by infer and evaluate (``auto``
    values are resolved by the :class:`Predictor`, in one place)."""
    if attention and cfg.get("model_file"):
        raise AttnUNetError("an exported model gives labels only; attention maps and previews need ckpt_path=")
    models = load_models(cfg)
    settings = PredictorSettings(
        device=cfg.device,
        precision=cfg.precision,
        overlap=cfg.overlap,
        sw_batch_size=cfg.sw_batch_size,
        tta=cfg.tta,
        largest_component=cfg.largest_component,
        attention=attention,
        keep_input=keep_input,
        slab_size=cfg.get("slab_size"),
        channels_last=cfg.performance.channels_last,
        compile=bool(cfg.performance.compile),
    )
    predictor = Predictor(models[0], settings) if len(models) == 1 else EnsemblePredictor(models, settings)
    kept = [predictor.model.labels[k] for k in predictor.largest_component_labels]
    how = "largest_component=true" if settings.largest_component is True else "as chosen on validation in training"
    if kept:
        log.info("Post-processing: only the largest connected piece of %s is kept (%s)", ", ".join(kept), how)
    return predictor
