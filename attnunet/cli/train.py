"""``attnunet-train``: fit an Attention U-Net; prints the best checkpoint and its monitored score (val/dice) last."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from attnunet.cli.arguments import hydra_command_line
from attnunet.cli.common import config_dir, log, report_errors, settings_of
from attnunet.data.audit_cache import audit_dataset
from attnunet.data.findings import refuse_errors
from attnunet.data.layouts import CaseList
from attnunet.errors import AttnUNetError
from attnunet.models.attention_unet import count_parameters
from attnunet.training.checkpoint_io import AtomicCheckpointIO
from attnunet.training.init_weights import FreezeEncoder, load_initial_weights
from attnunet.training.module import SegmentationModule
from attnunet.utils.hardware import resolve_channels_last, resolve_precision, training_device_type
from attnunet.utils.process import prepare_process


def resolve_checkpoint(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``last`` -> ``<run_dir>/checkpoints/last.ckpt`` (must exist); ``auto`` -> the same if it exists,
    else a fresh start (for jobs that may be requeued); any other value is a path that must exist."""
    if ckpt_path is None:
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    if ckpt_path == "auto":
        return str(last) if last.is_file() else None
    path = last if ckpt_path == "last" else Path(ckpt_path).expanduser()
    if not path.is_file():
        raise AttnUNetError("checkpoint to resume from does not exist", path)
    return str(path)


def audit_before_training(dataset: CaseList, check: DictConfig) -> None:
    """The dataset audit of ``attnunet-check`` (each case measured once, kept in ``check.cache_dir``):
    findings are logged, an error-level one stops the run unless ``check.ignore_errors``."""
    cache_dir = Path(check.cache_dir).expanduser() if check.cache_dir else None
    findings = audit_dataset(dataset.cases, dataset.labels, cache_dir)
    for finding in findings:
        log.warning(finding.line())
    if not check.ignore_errors:
        refuse_errors(findings, dataset.source, "check.ignore_errors=true")


def train(cfg: DictConfig) -> tuple[str, float | None]:
    """Build everything from ``cfg`` and fit; returns the best checkpoint path and its val/dice."""
    run_dir = Path(cfg.run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    prepare_process(cfg.performance)
    resume = resolve_checkpoint(cfg.ckpt_path, run_dir)  # before any data work: a wrong path fails at once

    with settings_of("data"):
        datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    if cfg.check.enabled and datamodule.synthetic is None:  # the built-in phantoms need no audit
        audit_before_training(datamodule.case_list, cfg.check)
    labels = datamodule.labels
    if cfg.model.num_classes is not None and cfg.model.num_classes != len(labels):
        raise AttnUNetError(
            f"model.num_classes={cfg.model.num_classes} but the dataset has {len(labels)} labels {labels}",
            datamodule.case_list.source,
        )
    two_d_patches = cfg.data.patch_size[-1] == 1
    if (cfg.model.spatial_dims == 2) != two_d_patches:
        raise AttnUNetError(
            f"model.spatial_dims={cfg.model.spatial_dims} needs data.patch_size "
            f"{'ending in 1 (axial slices)' if cfg.model.spatial_dims == 2 else 'of three sizes > 1'}, "
            f"got {list(cfg.data.patch_size)}"
        )
    device_type = training_device_type(str(cfg.trainer.get("accelerator", "auto")))
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg.pop("num_classes")
    with settings_of("model"):
        module: SegmentationModule = instantiate(
            cfg.module,
            model=model_cfg,
            labels=labels,
            preprocessing=datamodule.spec.to_dict(),
            channels_last=resolve_channels_last(cfg.performance.channels_last, device_type),
            flip_axes=datamodule.flip_axes,
        )
    log.info("%s: %.2f M parameters", type(module.net).__name__, count_parameters(module.net) / 1e6)
    if cfg.init_weights and resume is None:  # a resumed (requeued) run continues from its own weights
        print(load_initial_weights(module.net, cfg.init_weights, model_cfg), flush=True)
    with settings_of("callbacks"):
        callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]
    if cfg.freeze_encoder_epochs:
        callbacks.append(FreezeEncoder(int(cfg.freeze_encoder_epochs)))
    with settings_of("logger"):
        loggers = [instantiate(c) for c in cfg.get("logger", {}).values() if c is not None]
    with settings_of("trainer", MisconfigurationException):
        precision = resolve_precision(cfg.trainer.get("precision", "auto"), device_type)
        trainer: pl.Trainer = instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers, precision=precision, plugins=[AtomicCheckpointIO()]
        )
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    best = next((c for c in trainer.checkpoint_callbacks if c.monitor is not None), None)  # not last.ckpt's
    path = best.best_model_path if best is not None else ""
    score = float(best.best_model_score) if best is not None and best.best_model_score is not None else None
    return path, score


@hydra_command_line(trainer_arguments=True)
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
@report_errors
def main(cfg: DictConfig) -> float | None:
    if cfg.run_dir is None:
        cfg.run_dir = HydraConfig.get().runtime.output_dir
    path, score = train(cfg)
    if score is None:
        last = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
        print(f"no validation ran, so there is no best checkpoint; last checkpoint: {last}", flush=True)
    else:
        monitor = cfg.callbacks.get("model_checkpoint", {}).get("monitor", "val/dice")
        print(f"best checkpoint: {path}  {monitor}: {score:.4f}", flush=True)
    return score


if __name__ == "__main__":
    main()
