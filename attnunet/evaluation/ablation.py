"""Ablation report over a Hydra multirun: does each variant beat the plain U-Net, and where do its gates look.

``attnunet-train experiment=ablation`` trains every variant with every seed on the same data, split
and budget; :class:`AblationReport` (a Hydra callback) then scores each run's best checkpoint on the
validation split with the evaluate code path and writes into the sweep folder:

- ``report.md`` / ``report.json``: per variant mean ± SD over seeds; per variant the paired
  difference to the U-Net (same seeds, same cases) with an interval that counts seed and case
  variation (:mod:`attnunet.evaluation.paired`); per gate the attention contrast
  (:mod:`attnunet.evaluation.attention_contrast`) on the validation cases and, when given, on a
  real CT with its organ mask;
- ``report.png``: the scores; ``report_attention.png``: the real CT's fullest organ slice, one row
  per variant (its lowest seed): CT, prediction with the organ outlined and every gate's alpha.

``python -m attnunet.evaluation.ablation <sweep dir> [--real-ct IMAGE MASK]`` redoes the report.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnunet.config_resolvers import register_resolvers
from attnunet.errors import AttnUNetError
from attnunet.evaluation.ablation_text import markdown
from attnunet.evaluation.attention_contrast import COLUMN_PREFIX, RealCase, contrast_columns, gate_contrast
from attnunet.evaluation.on_split import evaluate_on_split
from attnunet.evaluation.paired import paired_difference
from attnunet.evaluation.report import LabelMap, on_reference_grid, read_label_map
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.predictor import Predictor, PredictorSettings
from attnunet.inference.preview import render_preview, save_png
from attnunet.models.attention_unet import count_parameters
from attnunet.utils import overlays
from attnunet.utils.atomic import write_text_atomically

log = logging.getLogger(__name__)

REPORTED = ("dice", "recall", "precision", "hd95_mm")
REFERENCE_VARIANT = "unet"


def score_run(
    job_dir: Path, split: str, tolerance_mm: float, real: RealCase | None
) -> tuple[dict[str, Any], np.ndarray | None]:
    """One job's variant, seed, parameters, seconds per epoch, mean and per-case metrics, and per
    gate the mean alpha inside the organ and over the body (validation cases and ``real``).
    Also returns the picture row of ``real`` (:func:`render_preview`; None without ``real``)."""
    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    cfg.run_dir = str(job_dir)  # filled at run time in training; its splits.json gives the same split
    choices = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.runtime.choices
    model = load_checkpoint(job_dir / "checkpoints" / "best.ckpt")
    gated = bool(model.net.attention_names)
    # The input volume is kept for the gates' body mask and the real CT's picture only.
    keep_input = gated or real is not None
    predictor = Predictor(model, PredictorSettings(largest_component=False, attention=gated, keep_input=keep_input))
    rows = evaluate_on_split(
        predictor, instantiate(cfg.data), split, tolerance_mm, job_dir, contrast_columns if gated else None
    )
    variant, seed = str(choices.model), int(cfg.seed)
    run: dict[str, Any] = {
        "variant": variant,
        "seed": seed,
        "parameters": count_parameters(model.net),
        "seconds_per_epoch": _seconds_per_epoch(job_dir / "tensorboard"),
        **{m: float(np.nanmean([r[m] for r in rows])) for m in REPORTED},
        "cases": {f"{r['case']}/{r['label']}": {m: r[m] for m in REPORTED} for r in rows},
        "attention_val": {gate: _mean_over_rows(rows, gate) for gate in model.net.attention_names} if gated else {},
    }
    picture = None
    if real is not None:
        prediction = predictor(real.image)
        mask = read_label_map(real.mask)
        organ = mask.array > 0
        run["attention_real"] = gate_contrast(prediction, organ, mask, real.image, real.mask)
        # The mask onto the prediction's grid (refused if it is another grid), so the picture's slice
        # and outline are the organ's whatever axis order or direction the mask was stored in.
        grid = LabelMap(prediction.labels, prediction.input_affine, ())
        focus = on_reference_grid(organ, mask.affine, real.mask, grid, real.image)
        window = model.preprocessing.intensity_window
        picture = render_preview(prediction.input_hu, prediction, window, focus, name=f"{variant} seed {seed}")
    return run, picture


def _mean_over_rows(rows: list[dict[str, Any]], gate: str) -> dict[str, float]:
    """One gate's organ alpha, body alpha and contrast (the :func:`contrast_columns`) over the cases."""
    return {key: float(np.nanmean([r[f"{prefix}/{gate}"] for r in rows])) for key, prefix in COLUMN_PREFIX.items()}


def _seconds_per_epoch(log_dir: Path) -> float:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    times = [e.wall_time for e in events.Scalars("train/loss_epoch")]
    return float(np.diff(times).mean()) if len(times) > 1 else float("nan")


def _mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample SD (ddof 1: a few seeds) of the finite values; NaN where undefined."""
    array = np.array(values, dtype=float)
    array = array[np.isfinite(array)]
    mean = float(array.mean()) if array.size else float("nan")
    return mean, float(array.std(ddof=1)) if array.size > 1 else float("nan")


def summarise_variants(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and SD over seeds per variant, in the order the variants first appear, with the
    attention figures per gate (``attention_val`` / ``attention_real``: gate -> key -> (mean, SD))."""
    table = []
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        row: dict[str, Any] = {"variant": variant, "seeds": len(mine), "parameters": mine[0]["parameters"]}
        for key in (*REPORTED, "seconds_per_epoch"):
            row[key] = _mean_sd([r[key] for r in mine])
        for where in ("attention_val", "attention_real"):
            per_run = [r[where] for r in mine if where in r]
            gates = dict.fromkeys(g for gates in per_run for g in gates)
            row[where] = {
                gate: {k: _mean_sd([g[gate][k] for g in per_run if gate in g]) for k in ("organ", "body", "contrast")}
                for gate in gates
            }
        table.append(row)
    return table


def paired_to_reference(runs: list[dict[str, Any]], reference: str = REFERENCE_VARIANT) -> list[dict[str, Any]]:
    """Per variant other than ``reference`` and per label: per metric the mean ``variant -
    reference`` over the seeds both ran and the cases both scored, with its 95% interval
    (:func:`~attnunet.evaluation.paired.paired_difference`); empty without ``reference``."""
    by_key = {(r["variant"], r["seed"]): r for r in runs}
    out = []
    for variant in dict.fromkeys(r["variant"] for r in runs if r["variant"] != reference):
        seeds = sorted(s for (v, s) in by_key if v == variant and (reference, s) in by_key)
        if not seeds:
            continue
        scored = [set(by_key[(v, s)]["cases"]) for s in seeds for v in (variant, reference)]
        keys = sorted(set.intersection(*scored))
        for label in dict.fromkeys(key.rsplit("/", 1)[1] for key in keys):
            cases = [key for key in keys if key.rsplit("/", 1)[1] == label]
            row: dict[str, Any] = {"variant": variant, "label": label, "seeds": seeds, "cases": len(cases)}
            for metric in REPORTED:
                mine, theirs = (
                    np.array([[by_key[(v, s)]["cases"][c][metric] for c in cases] for s in seeds], dtype=float)
                    for v in (variant, reference)
                )
                row[metric] = paired_difference(mine - theirs)
            out.append(row)
    return out


def write_ablation_report(
    sweep_dir: str | Path, split: str = "val", tolerance_mm: float = 2.0, real: RealCase | None = None
) -> Path:
    """Score every finished job under ``sweep_dir``; write ``report.md/.json/.png`` (and
    ``report_attention.png`` with ``real``); return the .md path."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted((p.parent.parent for p in sweep_dir.glob("*/checkpoints/best.ckpt")), key=_job_order)
    if not jobs:
        raise AttnUNetError("no finished run (no <job>/checkpoints/best.ckpt) to report on", sweep_dir)
    scored = [score_run(job, split, tolerance_mm, real) for job in jobs]
    runs = [run for run, _ in scored]
    table = summarise_variants(runs)
    paired = paired_to_reference(runs)
    report = {
        "split": split,
        "real_ct": None if real is None else {"image": str(real.image), "mask": str(real.mask)},
        "runs": runs,
        "variants": table,
        "paired_to_unet": [{**p, **{m: vars(p[m]) for m in REPORTED}} for p in paired],
    }
    write_text_atomically(sweep_dir / "report.json", json.dumps(report, indent=2))
    plot(table, sweep_dir / "report.png")
    if real is not None:
        lowest_seed: dict[str, tuple[int, np.ndarray]] = {}
        for run, picture in scored:
            if picture is not None and run["seed"] < lowest_seed.get(run["variant"], (np.inf, None))[0]:
                lowest_seed[run["variant"]] = (run["seed"], picture)
        save_png(overlays.stack([p for _, p in lowest_seed.values()]), sweep_dir / "report_attention.png")
    text = markdown(len(runs), split, table, paired, real)
    write_text_atomically(sweep_dir / "report.md", text)
    return sweep_dir / "report.md"


def _job_order(job_dir: Path) -> tuple[int, str]:
    """Hydra's job folders 0, 1, ..., 10 in numeric order (other names after them)."""
    return (int(job_dir.name), "") if job_dir.name.isdigit() else (1 << 30, job_dir.name)


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
        stds = [np.nan_to_num(r[m][1]) for r in table]
        ax.bar(x + (i - 1) * width, means, width, yerr=stds, capsize=3, label=m)
    ax.set_xticks(x, [r["variant"] for r in table])
    low = min(r[m][0] - np.nan_to_num(r[m][1]) for r in table for m in metrics)
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.set_ylabel("validation score (mean ± SD over seeds)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def real_case(image: str | Path | None, mask: str | Path | None) -> RealCase | None:
    """The real CT to read the gates on, or None (logged) when not given or not found."""
    if image is None or mask is None:
        return None
    case = RealCase(Path(image).expanduser().resolve(), Path(mask).expanduser().resolve())
    missing = [str(p) for p in (case.image, case.mask) if not p.is_file()]
    if missing:
        log.warning("real CT for the attention contrast not found (%s): phantoms only", ", ".join(missing))
        return None
    return case


class AblationReport(Callback):
    """Hydra callback: writes the report when the multirun ends. ``real_image`` / ``real_mask``:
    a real CT and its organ mask (relative paths from the working directory); missing files leave
    the real-CT part out, said in the log and the report."""

    def __init__(
        self, split: str = "val", tolerance_mm: float = 2.0, real_image: str | None = None, real_mask: str | None = None
    ) -> None:
        self.split = split
        self.tolerance_mm = tolerance_mm
        self.real_image = real_image
        self.real_mask = real_mask

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        real = real_case(self.real_image, self.real_mask)
        path = write_ablation_report(config.hydra.sweep.dir, self.split, self.tolerance_mm, real)
        print(path.read_text(), flush=True)
        print(f"ablation report: {path}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--tolerance-mm", type=float, default=2.0)
    parser.add_argument("--real-ct", nargs=2, metavar=("IMAGE", "MASK"), help="a real CT and its organ mask")
    args = parser.parse_args(argv)
    register_resolvers()  # the runs' stored configs use them
    real = real_case(*args.real_ct) if args.real_ct else None
    print(write_ablation_report(args.sweep_dir, args.split, args.tolerance_mm, real).read_text())


if __name__ == "__main__":
    main()
