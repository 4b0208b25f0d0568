"""``attnunet-evaluate``: per-case metrics, either by running a checkpoint on a labelled split
(``ckpt_path=``) or by scoring existing predictions (``pred_dir=`` + ``label_dir=``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from attnunet.cli.arguments import hydra_command_line
from attnunet.cli.common import config_dir, report_errors, settings_of, tune_runtime
from attnunet.data.naming import is_nifti, stem
from attnunet.errors import AttnUNetError
from attnunet.evaluation.on_split import evaluate_on_split
from attnunet.evaluation.report import (
    LabelMap,
    check_label_values,
    format_table,
    read_label_map,
    relabelled,
    score_pair,
    write_report,
)
from attnunet.inference.configured import model_sources, predictor_from_config
from attnunet.inference.outputs import predicted_case


def evaluate_checkpoint(cfg: DictConfig) -> list[dict[str, Any]]:
    """Mode 1: predict every case of the chosen split with the infer code path, then score."""
    with settings_of("predictor"):
        predictor = predictor_from_config(cfg)
    with settings_of("data"):
        datamodule = instantiate(cfg.data)
    return evaluate_on_split(predictor, datamodule, cfg.split, cfg.nsd_tolerance_mm, model_sources(cfg)[0])


def evaluate_folders(cfg: DictConfig) -> list[dict[str, Any]]:
    """Mode 2: match ``<case>_seg.nii.gz`` (or ``<case>.nii.gz``) in pred_dir to labels by name."""
    pred_dir, label_dir = Path(cfg.pred_dir).expanduser(), Path(cfg.label_dir).expanduser()
    for folder in (pred_dir, label_dir):
        if not folder.is_dir():
            raise AttnUNetError("not a folder", folder)
    preds = {case: p for p in sorted(pred_dir.iterdir()) if is_nifti(p) and (case := predicted_case(p)) is not None}
    refs = {stem(p): p for p in sorted(label_dir.iterdir()) if is_nifti(p)}
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise AttnUNetError(f"no prediction for {len(missing)} labelled cases, e.g. {missing[:3]}", pred_dir)
    labels = {int(k): str(v) for k, v in cfg.labels.items()} if cfg.labels else None
    lookup = {int(k): int(v) for k, v in cfg.merge_labels.items()} if cfg.merge_labels else None
    rows = []
    for case in tqdm(sorted(refs), desc="cases", unit="case"):
        ref, pred = relabelled(read_label_map(refs[case]), lookup), read_label_map(preds[case])
        case_labels = labels or _labels_found(ref, pred)
        check_label_values(ref, case_labels, refs[case])
        check_label_values(pred, case_labels, preds[case])
        rows += score_pair(
            case, pred.array, pred.affine, preds[case], ref, refs[case], case_labels, cfg.nsd_tolerance_mm
        )
    return rows


def _labels_found(*maps: LabelMap) -> dict[int, str]:
    values = {v for m in maps for v in m.values if v >= 0} | {0}
    return {v: ("background" if v == 0 else f"label{v}") for v in sorted(values)}


@hydra_command_line()
@hydra.main(version_base="1.3", config_path=config_dir(), config_name="evaluate")
@report_errors
def main(cfg: DictConfig) -> None:
    tune_runtime(cfg.performance)
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
