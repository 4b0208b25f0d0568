"""Score sim-to-real variants by signals that cannot tune to one real pancreas label.

For every training run of every variant (and each variant's ensemble of all its runs):
- Dice on unseen phantom sets (another seed, another generator setting), through ``attnunet-evaluate``;
- on a real CT with a multi-organ map, through ``attnunet-infer``: the predicted pancreas volume and
  the share of it lying on organs that are *not* the pancreas (liver, spleen, kidneys, stomach,
  duodenum, bowel, vessels, ...). Neither reads the pancreas label;
- with ``--pancreas`` only: the Dice against the real pancreas label. Read it once per final
  variant, after the choice is made (docs/results.md, "Sim-to-real": the protocol).

Variants are compared as mean +- SD over their runs. Usage::

    python scripts/sim2real_report.py --variant baked=runs/baseline_s1,runs/baseline_s2,runs/baseline_s3 \\
        --variant rendered=runs/render_s1,runs/render_s2,runs/render_s3 \\
        --phantoms data/phantoms_seed123 data/phantoms_pv_seed321 \\
        --ct ct.nii.gz --organs organs.nii.gz --organ-names organs.json --out report/ [--pancreas 7]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from attnunet.inference.checkpoint import load_checkpoint

# TotalSegmentator class-name prefixes grouped as a reader of the table thinks of them.
ORGAN_GROUPS = {
    "liver": ("liver",),
    "spleen": ("spleen",),
    "kidney": ("kidney",),
    "stomach": ("stomach",),
    "duodenum": ("duodenum",),
    "bowel": ("small_bowel", "colon"),
    "vessels": ("aorta", "inferior_vena_cava", "portal_vein", "iliac_", "superior_mesenteric"),
    "gallbladder": ("gallbladder",),
}
# Organ classes of a model trained with data.organs=true (attnunet.phantom.organs), as organ groups above.
MODEL_ORGAN_GROUPS = {
    "liver": ("liver",),
    "spleen": ("spleen",),
    "kidney": ("kidney",),
    "gallbladder": ("gallbladder",),
    "gut": ("stomach", "duodenum", "bowel"),
    "vessels": ("vessels",),
}


def run(command: str, args: list[str]) -> None:
    """Run ``attnunet <command>`` with this interpreter; its one-line error ends this script."""
    done = subprocess.run([sys.executable, "-m", "attnunet", command, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"attnunet {command} failed: {done.stderr.strip().splitlines()[-1:]}")


def ckpt_arg(ckpts: list[Path]) -> str:
    return f"ckpt_path={ckpts[0]}" if len(ckpts) == 1 else "ckpt_path=[" + ",".join(map(str, ckpts)) + "]"


def phantom_dice(ckpts: list[Path], dataset: Path, out: Path) -> float:
    """Mean pancreas Dice of the model(s) over every case of a phantom set."""
    if not (out / "summary.json").is_file():
        run("evaluate", [ckpt_arg(ckpts), f"data.root={dataset}", "split=all", f"hydra.run.dir={out}"])
    summary = json.loads((out / "summary.json").read_text())
    return float(summary["per_label"]["pancreas"]["dice"]["mean"])


def real_ct_signals(
    ckpts: list[Path],
    ct: Path,
    organs: np.ndarray,
    names: dict[int, str],
    out: Path,
    pancreas: int | None,
    model_labels: dict[int, str] | None = None,
) -> dict[str, float]:
    """Predicted volume (mL), share of it on each non-pancreas organ group, the Dice of every organ
    class the model has besides the pancreas (``model_labels``: its label map) against the organ
    map, and (only when ``pancreas`` is given) the pancreas Dice against that organ-map class."""
    seg_path = out / (ct.name.removesuffix(".gz").removesuffix(".nii") + "_seg.nii.gz")
    if not seg_path.is_file():
        run("infer", [ckpt_arg(ckpts), f"input={ct}", f"output_dir={out}", f"hydra.run.dir={out}/.run"])
    seg = nib.load(seg_path)
    predicted = np.asarray(seg.dataobj)
    pred = predicted == 1
    voxel_ml = float(abs(np.linalg.det(seg.affine[:3, :3]))) / 1000.0
    n = int(pred.sum())
    row: dict[str, float] = {"volume_ml": n * voxel_ml}
    hit = organs[pred]
    for group, prefixes in ORGAN_GROUPS.items():
        values = [v for v, name in names.items() if name.startswith(prefixes)]
        count = int(np.isin(hit, values).sum())
        row[f"on_{group}"] = count / max(n, 1)
    other_values = [v for v, name in names.items() if v != 0 and name != "pancreas"]
    on_other = int(np.isin(hit, other_values).sum())
    row["on_other_organs"] = on_other / max(n, 1)
    for value, name in (model_labels or {}).items():
        if name in MODEL_ORGAN_GROUPS:
            prefixes = tuple(p for group in MODEL_ORGAN_GROUPS[name] for p in ORGAN_GROUPS[group])
            ref = np.isin(organs, [v for v, organ in names.items() if organ.startswith(prefixes)])
            row[f"dice_{name}"] = mask_dice(predicted == value, ref)
    if pancreas is not None:
        row["pancreas_dice"] = mask_dice(pred, organs == pancreas)
    return row


def mask_dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice of two boolean masks of one shape (0 when both are empty)."""
    return 2.0 * float((prediction & reference).sum()) / max(int(prediction.sum() + reference.sum()), 1)


def mean_sd(values: list[float]) -> str:
    """``mean ± SD`` over runs (``-`` when no run has the figure, e.g. an organ a variant lacks)."""
    a = np.asarray(values, float)
    if len(a) == 0:
        return "-"
    return f"{a.mean():.3f} ± {a.std(ddof=1):.3f}" if len(a) > 1 else f"{a.mean():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, help="name=run_dir,run_dir,...")
    parser.add_argument("--phantoms", nargs="+", type=Path, required=True, help="unseen phantom sets (MSD layout)")
    parser.add_argument("--ct", type=Path, required=True, help="real CT (NIfTI)")
    parser.add_argument("--organs", type=Path, required=True, help="multi-organ map on the CT's grid")
    parser.add_argument("--organ-names", type=Path, required=True, help='JSON {"value": "name"}')
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pancreas", type=int, default=None, help="organ-map value of the pancreas: read its Dice")
    parser.add_argument("--checkpoint", default="best.ckpt")
    args = parser.parse_args()

    organ_img, ct = nib.load(args.organs), nib.load(args.ct)  # predictions come on the CT's own grid
    if organ_img.shape != ct.shape or not np.allclose(organ_img.affine, ct.affine, atol=1e-3):
        sys.exit(f"{args.organs}: organ map is not on the grid of {args.ct}")
    organs = np.asarray(organ_img.dataobj)
    names = {int(k): str(v) for k, v in json.loads(args.organ_names.read_text()).items()}
    rows = []
    for spec in args.variant:
        variant, dirs = spec.split("=", 1)
        ckpts = [Path(d) / "checkpoints" / args.checkpoint for d in dirs.split(",")]
        members = [(Path(d).name, [c]) for d, c in zip(dirs.split(","), ckpts, strict=True)]
        if len(ckpts) > 1:
            members.append(("ensemble", ckpts))
        for name, models in members:
            row: dict = {"variant": variant, "run": name}
            for dataset in args.phantoms:
                row[f"dice_{dataset.name}"] = phantom_dice(models, dataset, args.out / variant / name / dataset.name)
            labels = load_checkpoint(models[0]).labels
            ct_out = args.out / variant / name / "ct"
            row.update(real_ct_signals(models, args.ct, organs, names, ct_out, args.pancreas, labels))
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("variant", "run")]
    print("| variant | " + " | ".join(keys) + " |")
    print("|" + " --- |" * (len(keys) + 1))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        runs = [r for r in rows if r["variant"] == variant and r["run"] != "ensemble"]
        cells = " | ".join(mean_sd([r[k] for r in runs if k in r]) for k in keys)
        print(f"| {variant} (mean ± SD, n={len(runs)}) | {cells} |")
        for r in rows:
            if r["variant"] == variant and r["run"] == "ensemble":
                print(f"| {variant} ensemble | " + " | ".join(mean_sd([r[k]] if k in r else []) for k in keys) + " |")


if __name__ == "__main__":
    main()
