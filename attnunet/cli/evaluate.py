"""``attnunet-evaluate``: per-case metrics, either by running a checkpoint on a labelled split
(``ckpt_path=``) or by scoring existing predictions (``pred_dir=`` + ``label_dir=``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from attnunet.cli.arguments import hydra_command_line
from attnunet.cli.common import config_dir, report_errors, settings_of
from attnunet.errors import AttnUNetError
from attnunet.evaluation.on_folders import score_folders
from attnunet.evaluation.on_split import evaluate_on_split
from attnunet.evaluation.report import format_table, write_report
from attnunet.inference.configured import model_sources, predictor_from_config
from attnunet.utils.process import prepare_process


def evaluate_checkpoint(cfg: DictConfig) -> list[dict[str, Any]]:
    """Mode 1: predict every case of the chosen split with the infer code path, then score."""
    with settings_of("predictor"):
        predictor = predictor_from_config(cfg)
    with settings_of("data"):
        datamodule = instantiate(cfg.data)
    return evaluate_on_split(predictor, datamodule, cfg.split, cfg.nsd_tolerance_mm, model_sources(cfg)[0])


def evaluate_folders(cfg: DictConfig) -> list[dict[str, Any]]:
    """Mode 2: score the predictions in ``pred_dir`` against the labels in ``label_dir``."""
    return score_folders(
        cfg.pred_dir,
        cfg.label_dir,
        cfg.nsd_tolerance_mm,
        labels={int(k): str(v) for k, v in cfg.labels.items()} if cfg.labels else None,
        merge_labels={int(k): int(v) for k, v in cfg.merge_labels.items()} if cfg.merge_labels else None,
    )


@hydra_command_line()
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="evaluate")
@report_errors
def main(cfg: DictConfig) -> None:
    prepare_process(cfg.performance)
    run_dir = Path(cfg.run_dir or HydraConfig.get().runtime.output_dir)
    cfg.run_dir = str(run_dir)
    if cfg.ckpt_path or cfg.ckpt_dir or cfg.model_file:
        rows = evaluate_checkpoint(cfg)
    elif cfg.pred_dir and cfg.label_dir:
        rows = evaluate_folders(cfg)
    else:
        raise AttnUNetError("give ckpt_path=... (run the model) or pred_dir=... label_dir=... (score predictions)")
    summary = write_report(rows, run_dir)
    print(format_table(summary))
    print(f"metrics: {run_dir / 'metrics.csv'}  summary: {run_dir / 'summary.json'}", flush=True)


if __name__ == "__main__":
    main()
