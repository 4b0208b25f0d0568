"""Ablation report over a Hydra multirun: one row per model variant, mean ± std over seeds.

``attnunet-train experiment=ablation`` trains every variant with every seed on the same data and
budget; :class:`AblationReport` (a Hydra callback) then scores each run's best checkpoint on the
validation split with the evaluate code path and writes ``report.md``, ``report.json`` and
``report.png`` into the sweep folder. ``python -m attnunet.evaluation.ablation <sweep dir>`` redoes
the report for an existing sweep.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnunet.evaluation.on_split import evaluate_on_split
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.predictor import Predictor, PredictorSettings
from attnunet.models.attention_unet import count_parameters
from attnunet.utils.atomic import write_text_atomically

REPORTED = ("dice", "recall", "precision", "hd95_mm")


def score_run(job_dir: Path, split: str, tolerance_mm: float) -> dict[str, Any]:
    """Variant, seed, parameters, seconds per epoch and mean foreground metrics of one job."""
    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    cfg.run_dir = str(job_dir)  # filled at run time in training; its splits.json gives the same split
    choices = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.runtime.choices
    model = load_checkpoint(job_dir / "checkpoints" / "best.ckpt")
    rows = evaluate_on_split(
        Predictor(model, PredictorSettings(largest_component=False)),
        instantiate(cfg.data),
        split,
        tolerance_mm,
        job_dir,
    )
    metrics = {m: float(np.nanmean([r[m] for r in rows])) for m in REPORTED}
    return {
        "variant": str(choices.model),
        "seed": int(cfg.seed),
        "parameters": count_parameters(model.net),
        "seconds_per_epoch": _seconds_per_epoch(job_dir / "tensorboard"),
        **metrics,
    }


def _seconds_per_epoch(log_dir: Path) -> float:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    times = [e.wall_time for e in events.Scalars("train/loss_epoch")]
    return float(np.diff(times).mean()) if len(times) > 1 else float("nan")


def summarise_variants(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per variant, in the order the variants first appear."""
    table = []
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        row: dict[str, Any] = {"variant": variant, "seeds": len(mine), "parameters": mine[0]["parameters"]}
        for key in (*REPORTED, "seconds_per_epoch"):
            values = np.array([r[key] for r in mine], dtype=float)
            row[key] = (float(np.nanmean(values)), float(np.nanstd(values)))
        table.append(row)
    return table


def markdown(table: list[dict[str, Any]]) -> str:
    header = "| variant | seeds | parameters | Dice | recall | precision | HD95 (mm) | s / epoch |"
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in table:
        cells = [f"{r[k][0]:.3f} ± {r[k][1]:.3f}" for k in ("dice", "recall", "precision")]
        cells.append(f"{r['hd95_mm'][0]:.1f} ± {r['hd95_mm'][1]:.1f}")
        cells.append(f"{r['seconds_per_epoch'][0]:.1f}")
        lines.append(f"| {r['variant']} | {r['seeds']} | {r['parameters'] / 1e6:.2f} M | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("dice", "recall", "precision")
    x = np.arange(len(table))
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(table), 3.6))
    for i, m in enumerate(metrics):
        means = [r[m][0] for r in table]
        stds = [r[m][1] for r in table]
        ax.bar(x + (i - 1) * width, means, width, yerr=stds, capsize=3, label=m)
    ax.set_xticks(x, [r["variant"] for r in table])
    low = min(r[m][0] - r[m][1] for r in table for m in metrics)
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.set_ylabel("validation score (mean ± std over seeds)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_ablation_report(sweep_dir: str | Path, split: str = "val", tolerance_mm: float = 2.0) -> Path:
    """Score every finished job under ``sweep_dir``; write ``report.md/.json/.png``; return the .md path."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted(p.parent.parent for p in sweep_dir.glob("*/checkpoints/best.ckpt"))
    runs = [score_run(job, split, tolerance_mm) for job in jobs]
    table = summarise_variants(runs)
    write_text_atomically(sweep_dir / "report.json", json.dumps({"runs": runs, "variants": table}, indent=2))
    plot(table, sweep_dir / "report.png")
    text = f"# Ablation ({len(runs)} runs, {split} split)\n\n{markdown(table)}\n\n![scores](report.png)\n"
    write_text_atomically(sweep_dir / "report.md", text)
    return sweep_dir / "report.md"


class AblationReport(Callback):
    """Hydra callback: writes the report when the multirun ends."""

    def __init__(self, split: str = "val", tolerance_mm: float = 2.0) -> None:
        self.split = split
        self.tolerance_mm = tolerance_mm

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_ablation_report(config.hydra.sweep.dir, self.split, self.tolerance_mm)
        print(path.read_text(), flush=True)
        print(f"ablation report: {path}", flush=True)


if __name__ == "__main__":
    print(write_ablation_report(sys.argv[1]).read_text())
