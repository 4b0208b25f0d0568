"""Peak memory and wall time of ``attnunet-infer`` against scan size, one-piece and slab mode.

    python scripts/benchmark_memory.py                    # 512 x 512 x 240 CT and the same stacked to 960 slices
    python scripts/benchmark_memory.py --slices 120 --slab-size 96 --ckpt best.ckpt

The 1x scan is ``benchmark_full_ct.make_full_ct`` (the repository's real test CT at 0.86 x 0.86 x 1 mm
in a 512 x 512 field, LPS int16); the 4x scan stacks it four times along z, every other copy
mirrored so the anatomy is continuous at the seams. Each run is ``python -m attnunet infer`` in a
fresh process (after one unmeasured run that warms the file cache): peak RSS from ``wait4``, wall
seconds of the process and the per-case seconds it reports. Bytes per voxel = peak RSS / input
voxels (the process's own ~0.4 GB of libraries and model included). Ratios: 4x against 1x (time
should be ~4x, bytes per voxel should not grow) and slab mode against one-piece, same size.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from benchmark_full_ct import make_checkpoint, make_full_ct, run_infer


def stacked(src: Path, copies: int, dst: Path) -> Path:
    """``src`` stacked ``copies`` times along its last axis, every other copy mirrored."""
    img = nib.load(src)
    volume = np.asarray(img.dataobj)
    parts = [volume if i % 2 == 0 else volume[:, :, ::-1] for i in range(copies)]
    nib.save(nib.Nifti1Image(np.concatenate(parts, axis=2), img.affine, img.header), dst)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=240, help="slices of the 1x scan")
    parser.add_argument("--slab-size", type=int, default=192, help="slab_size of the slab-mode rows")
    parser.add_argument("--ckpt", type=Path, default=None, help="default: the default model, random weights")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scans = {"1x": make_full_ct(folder / "ct1x.nii.gz", size=(512, 512, args.slices))}
        scans["4x"] = stacked(scans["1x"], 4, folder / "ct4x.nii.gz")
        ckpt = args.ckpt or make_checkpoint(folder / "default.ckpt")
        run_infer(ckpt, scans["1x"], folder / "warm", args.device)
        modes = {"one-piece": (), "slab": (f"slab_size={args.slab_size}",)}
        rows = {}
        for size, scan in scans.items():
            voxels = int(np.prod(nib.load(scan).shape))
            for mode, extra in modes.items():
                result = run_infer(ckpt, scan, folder / f"{size}_{mode}", args.device, overrides=extra)
                rows[size, mode] = {"voxels": voxels, **result}
            same = np.array_equal(
                *(np.asarray(nib.load(folder / f"{size}_{m}" / f"ct{size}_seg.nii.gz").dataobj) for m in modes)
            )
            rows[size, "slab"]["same_labels"] = same
    print(f"attnunet-infer, device {args.device}, slab_size={args.slab_size}")
    print("| scan | mode | voxels | peak MB | bytes/voxel | case s | process s | peak vs one-piece | same labels |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for (size, mode), r in rows.items():
        peak_mb = r["peak_rss_gib"] * 2**30 / 1e6
        ratio = r["peak_rss_gib"] / rows[size, "one-piece"]["peak_rss_gib"]
        same = "" if mode == "one-piece" else ("yes" if r["same_labels"] else "NO")
        print(
            f"| {size} | {mode} | {r['voxels']:,} | {peak_mb:.0f} | {peak_mb * 1e6 / r['voxels']:.1f} | "
            f"{r['case_s']:.1f} | {r['process_s']:.1f} | {ratio:.2f}x | {same} |"
        )
    for mode in modes:
        small, large = rows["1x", mode], rows["4x", mode]
        print(
            f"{mode}: 4x the voxels -> {large['case_s'] / small['case_s']:.2f}x the case time, "
            f"{large['peak_rss_gib'] / small['peak_rss_gib']:.2f}x the peak memory"
        )


if __name__ == "__main__":
    main()
