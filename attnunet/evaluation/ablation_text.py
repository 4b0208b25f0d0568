"""The ablation report's Markdown: scores, paired differences to the U-Net, attention contrast."""

from __future__ import annotations

from typing import Any

import numpy as np

from attnunet.evaluation.attention_contrast import RealCase

METRIC_NAMES = {"dice": "Dice", "recall": "recall", "precision": "precision", "hd95_mm": "HD95 (mm)"}
CONTRAST_NOTE = (
    "Attention contrast: mean alpha inside the organ / mean alpha over the body (voxels above -500 HU), "
    "per case then averaged; 1 = the gate passes the organ no more than any body voxel."
)


def _pm(pair: tuple[float, float], digits: int = 3) -> str:
    """``mean ± SD``; ``mean`` alone where the SD is undefined (one seed)."""
    mean, sd = pair
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if np.isfinite(sd) else "")


def scores_table(table: list[dict[str, Any]]) -> str:
    """Per variant: seeds, parameters, mean ± SD of every metric and seconds per epoch."""
    header = "| variant | seeds | parameters | Dice | recall | precision | HD95 (mm) | s / epoch |"
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in table:
        cells = [_pm(r[k]) for k in ("dice", "recall", "precision")]
        cells += [_pm(r["hd95_mm"], 1), f"{r['seconds_per_epoch'][0]:.1f}"]
        lines.append(f"| {r['variant']} | {r['seeds']} | {r['parameters'] / 1e6:.2f} M | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(paired: list[dict[str, Any]]) -> str:
    """Per variant (and label, when there are several) the mean difference to the U-Net with its 95%
    interval, bold where the interval excludes 0, and the Dice difference of each seed."""
    labels = len({p["label"] for p in paired}) > 1
    lines = [
        "| variant | seeds x cases | " + " | ".join(METRIC_NAMES.values()) + " | Dice, per seed |",
        "| --- | ---: | " + " | ".join("---:" for _ in METRIC_NAMES) + " | ---: |",
    ]
    for p in paired:
        cells = []
        for metric in METRIC_NAMES:
            d = p[metric]
            text = d.text(1 if metric == "hd95_mm" else 3)
            text = f"**{text}**" if d.resolved else text
            cells.append(text + (f" ({d.cases} cases)" if d.dropped_cases else ""))
        per_seed = ", ".join(f"{v:+.3f}" for v in p["dice"].per_seed)
        name = f"{p['variant']} ({p['label']})" if labels else p["variant"]
        lines.append(f"| {name} | {len(p['seeds'])} x {p['cases']} | " + " | ".join(cells) + f" | {per_seed} |")
    return "\n".join(lines)


def verdicts(paired: list[dict[str, Any]]) -> str:
    """One line per variant: where the interval excludes 0 (better or worse), where it does not."""
    out = []
    for p in paired:
        better = [METRIC_NAMES[m] for m in METRIC_NAMES if p[m].resolved and _improves(m, p[m].mean)]
        worse = [METRIC_NAMES[m] for m in METRIC_NAMES if p[m].resolved and not _improves(m, p[m].mean)]
        open_ = [METRIC_NAMES[m] for m in METRIC_NAMES if not p[m].resolved]
        parts = [f"better {', '.join(better)}" if better else "", f"worse {', '.join(worse)}" if worse else ""]
        parts.append(f"not resolved: {', '.join(open_)}" if open_ else "")
        out.append(f"- {p['variant']} against unet: " + "; ".join(x for x in parts if x) + ".")
    return "\n".join(out)


def _improves(metric: str, delta: float) -> bool:
    return delta < 0 if metric == "hd95_mm" else delta > 0


def attention_table(table: list[dict[str, Any]], real: bool) -> str:
    """Per variant and gate: organ alpha, body alpha and contrast (mean ± SD over seeds) on the
    validation cases and, with ``real``, on the real CT."""
    places = ["attention_val", *(["attention_real"] if real else [])]
    titles = {"attention_val": "validation", "attention_real": "real CT"}
    header = "| variant | gate | " + " | ".join(f"{titles[w]}: organ α | body α | contrast" for w in places) + " |"
    lines = [header, "| --- | --- | " + " | ".join("---: | ---: | ---:" for _ in places) + " |"]
    for r in table:
        for gate in r["attention_val"]:
            cells = []
            for where in places:
                g = r[where].get(gate)
                cells += [_pm(g["organ"], 2), _pm(g["body"], 2), _pm(g["contrast"], 1)] if g else ["-", "-", "-"]
            lines.append(f"| {r['variant']} | {gate} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(
    runs: int, split: str, table: list[dict[str, Any]], paired: list[dict[str, Any]], real: RealCase | None
) -> str:
    """The whole report."""
    parts = [f"# Ablation ({runs} runs, {split} split)", "## Scores (mean ± SD over seeds)", scores_table(table)]
    if paired:
        parts += [
            "## Paired difference to unet",
            "Same seeds, same cases. 95% interval, approximate: t interval whose variance counts seed and "
            "case variation (seeds x cases layout, Satterthwaite degrees of freedom); n/a below 2 seeds or 2 "
            "cases. **Bold**: the interval excludes 0 (resolved). Several metrics and variants are compared "
            "without adjustment: read a single bold figure with care.",
            paired_table(paired),
            verdicts(paired),
        ]
    if any(r["attention_val"] for r in table):
        parts += ["## Where the gates look", CONTRAST_NOTE, attention_table(table, real is not None)]
        if real is None:
            parts.append("No real CT given (`real_image` / `real_mask`, or `--real-ct`): phantoms only.")
        else:
            parts.append(f"Real CT: `{real.image.name}`, organ mask `{real.mask.name}` (alpha against that mask).")
            parts.append("![gates on the real CT, lowest seed of each variant](report_attention.png)")
    parts.append("![scores](report.png)")
    return "\n\n".join(parts) + "\n"
