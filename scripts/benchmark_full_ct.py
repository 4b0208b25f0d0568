"""End to end through ``attnunet-infer`` on a full-size abdominal CT: wall time and peak RSS.

    python scripts/benchmark_full_ct.py                  # 512 x 512 x 240 at 0.86 x 0.86 x 1 mm
    python scripts/benchmark_full_ct.py --device cuda --slices 256

The CT is built from the repository's real test CT (``tests/data/abdomen_ct.nii.gz``, 3 mm):
resampled to the clinical voxel size, placed in a 512 x 512 field of air and stored the way
scanners store it (LPS, int16), so the run pays for everything a real scan costs: decompression,
reorientation, resampling, body crop, sliding window, the way back to the input grid and the
compressed write. The checkpoint has the default model and preprocessing of ``attnunet-train``
with random weights (speed does not depend on the weights), or pass a trained one with ``--ckpt``:
the argmax agreement of the bf16 path with the fp32 path is only meaningful for trained weights
(an untrained net's two logits nearly tie everywhere). Also used by ``benchmark.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
TEST_CT = REPO / "tests" / "data" / "abdomen_ct.nii.gz"
AIR_HU = -1024
# Copies of the CT in the folder run (per-case time once start-up is paid).
FOLDER_COPIES = 4


def make_full_ct(path: Path, size: tuple[int, int, int] = (512, 512, 240), spacing=(0.86, 0.86, 1.0)) -> Path:
    """Write the test CT resampled to ``spacing`` and padded (or centre-cropped) to ``size``, LPS int16."""
    src = nib.load(TEST_CT)
    zoom = np.asarray(src.header.get_zooms()[:3]) / np.asarray(spacing)
    body = ndimage.zoom(np.asarray(src.dataobj, dtype=np.float32), zoom, order=1, mode="nearest")
    volume = np.full(size, AIR_HU, dtype=np.int16)
    src_box, dst_box = [], []
    for have, want in zip(body.shape, size):
        lo_src, lo_dst = max(0, (have - want) // 2), max(0, (want - have) // 2)
        n = min(have, want)
        src_box.append(slice(lo_src, lo_src + n))
        dst_box.append(slice(lo_dst, lo_dst + n))
    volume[tuple(dst_box)] = np.clip(np.rint(body[tuple(src_box)]), -32768, 32767).astype(np.int16)
    # RAS (as the test file) -> LPS storage: flip the first two axes, negate their affine columns;
    # the field's centre keeps the world position of the source's centre.
    volume = volume[::-1, ::-1].copy()
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    source_centre = src.affine @ np.append((np.asarray(src.shape[:3]) - 1) / 2, 1.0)
    affine[:3, 3] = source_centre[:3] - affine[:3, :3] @ ((np.asarray(size) - 1) / 2)
    nib.save(nib.Nifti1Image(volume, affine), path)
    return path


def make_checkpoint(path: Path) -> Path:
    """A checkpoint of ``attnunet-train``'s default model, labels, preprocessing and window."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from attnunet.checkpoint_format import write_checkpoint
    from attnunet.cli.common import config_dir
    from attnunet.data.transforms import PreprocessingSpec
    from attnunet.training.module import SegmentationModule

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="train")
    plain = OmegaConf.to_container(cfg, resolve=True)
    torch.manual_seed(0)
    module = SegmentationModule(
        model=plain["model"],
        labels={0: "background", 1: "pancreas"},
        preprocessing=PreprocessingSpec.from_dict(plain["data"]["preprocessing"]).to_dict(),
        sliding_window=plain["sliding_window"],
        optimizer=plain["optimizer"],
    )
    return write_checkpoint(path, module.description(), module.net.state_dict())


def run_infer(
    ckpt: Path,
    image: Path,
    output_dir: Path,
    device: str = "auto",
    precision: str = "auto",
    overrides: tuple[str, ...] = (),
) -> dict:
    """Run ``python -m attnunet infer`` (plus ``overrides``) as its own process: wall seconds, the
    per-case time it reports, and that process's peak RSS (GiB)."""
    cmd = [sys.executable, "-m", "attnunet", "infer", f"ckpt_path={ckpt}", f"input={image}"]
    cmd += [f"output_dir={output_dir}", f"device={device}", f"precision={precision}", *overrides]
    cmd += [f"hydra.run.dir={output_dir}/.hydra_run"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)  # wait4: this child's own peak RSS
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"attnunet infer failed:\n{output}")
    per_case = [float(t) for t in re.findall(r": ([0-9.]+) s$", output, flags=re.MULTILINE)]
    return {
        "process_s": wall,
        "case_s": per_case[0] if per_case else None,
        "peak_rss_gib": usage.ru_maxrss / 2**20,
    }


def agreement(seg_a: Path, seg_b: Path) -> dict:
    """Share of voxels with the same label, and the Dice of their foregrounds (NaN: both empty)."""
    a, b = (np.asarray(nib.load(p).dataobj) for p in (seg_a, seg_b))
    fg_a, fg_b = a > 0, b > 0
    both = int(fg_a.sum()) + int(fg_b.sum())
    dice = 2 * int((fg_a & fg_b & (a == b)).sum()) / both if both else float("nan")
    return {"voxel_agreement": float((a == b).mean()), "foreground_dice": dice, "foreground_voxels": int(fg_b.sum())}


def full_ct_benchmark(device: str = "auto", slices: int = 240, ckpt: Path | None = None) -> dict:
    """Build the CT (and, without ``ckpt``, a random-weight default checkpoint) in a temporary
    folder; run inference on it twice with the automatic precision (the first run warms the file
    cache) and keep the second: one CT, end to end, in a fresh process. Then a folder of
    ``FOLDER_COPIES`` copies: the extra wall time per extra case is the per-case time of a folder
    run (start-up paid once; on an accelerator the next case is read while the current one runs).
    Last, the fp32 path for the argmax agreement of the fast path."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = make_full_ct(folder / "full_ct.nii.gz", size=(512, 512, slices))
        ckpt = ckpt or make_checkpoint(folder / "default.ckpt")
        run_infer(ckpt, image, folder / "warm", device)
        result = run_infer(ckpt, image, folder / "out", device)
        copies = folder / "copies"
        copies.mkdir()
        for i in range(FOLDER_COPIES):
            shutil.copyfile(image, copies / f"ct{i}.nii.gz")
        many = run_infer(ckpt, copies, folder / "copies_out", device)
        result["folder_case_s"] = (many["process_s"] - result["process_s"]) / (FOLDER_COPIES - 1)
        result["folder_peak_rss_gib"] = many["peak_rss_gib"]
        run_infer(ckpt, image, folder / "fp32", device, precision="fp32")
        seg = nib.load(folder / "out" / "full_ct_seg.nii.gz")
        if seg.shape != (512, 512, slices) or not np.allclose(seg.affine, nib.load(image).affine):
            raise RuntimeError(f"prediction is not on the input grid: {seg.shape}")
        same = agreement(folder / "out" / "full_ct_seg.nii.gz", folder / "fp32" / "full_ct_seg.nii.gz")
    return {"shape": [512, 512, slices], "device": device, "checkpoint": str(ckpt), **result, **same}


def attention_cost(device: str = "auto", slices: int = 240, ckpt: Path | None = None, runs: int = 3) -> dict:
    """``save_attention=true`` against a plain run on the full CT: ``runs`` of each, alternating
    (after one untimed run that warms the file cache), each in a fresh process; medians."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = make_full_ct(folder / "full_ct.nii.gz", size=(512, 512, slices))
        ckpt = ckpt or make_checkpoint(folder / "default.ckpt")
        run_infer(ckpt, image, folder / "warm", device)
        times: dict[str, list[float]] = {"plain": [], "attention": []}
        for i in range(runs):
            for kind, extra in (("plain", ()), ("attention", ("save_attention=true",))):
                times[kind].append(run_infer(ckpt, image, folder / f"{kind}{i}", device, overrides=extra)["case_s"])
    medians = {k: float(np.median(v)) for k, v in times.items()}
    return {"shape": [512, 512, slices], "runs": times, **medians, "ratio": medians["attention"] / medians["plain"]}


def print_attention_cost(result: dict) -> None:
    shape = "x".join(map(str, result["shape"]))
    print(f"\nsave_attention=true on the {shape} CT, per case, median of {len(result['runs']['plain'])}")
    print("| plain (s) | with attention maps (s) | ratio |")
    print("| ---: | ---: | ---: |")
    print(f"| {result['plain']:.1f} | {result['attention']:.1f} | {result['ratio']:.2f}x |")


def print_full_ct(result: dict) -> None:
    shape = "x".join(map(str, result["shape"]))
    print(f"\nattnunet-infer, {shape} CT at 0.86x0.86x1 mm, device {result['device']}")
    print(
        f"| one case (s) | whole process (s) | peak RSS (GiB) | per case in a folder of {FOLDER_COPIES} (s) "
        "| its peak RSS (GiB) | argmax = fp32 | fg Dice to fp32 |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    case = "-" if result["case_s"] is None else f"{result['case_s']:.1f}"
    print(
        f"| {case} | {result['process_s']:.1f} | {result['peak_rss_gib']:.2f} | {result['folder_case_s']:.1f} | "
        f"{result['folder_peak_rss_gib']:.2f} | {100 * result['voxel_agreement']:.3f}% | "
        f"{result['foreground_dice']:.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--slices", type=int, default=240)
    parser.add_argument("--ckpt", type=Path, default=None, help="a trained checkpoint (default: random weights)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--attention", action="store_true", help="instead: the cost of save_attention=true")
    args = parser.parse_args()
    if args.attention:
        result = attention_cost(args.device, args.slices, args.ckpt)
        print_attention_cost(result)
    else:
        result = full_ct_benchmark(args.device, args.slices, args.ckpt)
        print_full_ct(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
