"""What a one-voxel boundary error costs in Dice on a dataset's labels, on the training grid.

    python scripts/boundary_tolerance.py DATASET_ROOT [--spacing 3 3 3] [--layout auto]

Every label goes through the training preprocessing (reorientation, resampling with nearest
neighbour, body crop: ``attnunet.data.transforms.preprocessing``, the one source of truth), and the
foreground (every value above 0) is compared with itself grown and shrunk by one voxel (6-connected)
and moved by one voxel along each axis. A prediction whose outline is as good as "right to within
one voxel" scores about these Dice figures, so they bound what a validation Dice target asks for on
thin structures such as the pancreas (docs/results.md, "Why it stops near 0.70").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import monai.transforms as mt
import numpy as np
from overlay_figure import dice  # a sibling script (the scripts folder is on sys.path when run)
from scipy import ndimage

from attnunet.data.layouts import discover
from attnunet.data.transforms import IMAGE, LABEL, PreprocessingSpec, preprocessing


def one_voxel_errors(mask: np.ndarray) -> dict[str, float]:
    """Dice of ``mask`` ``(X, Y, Z)`` bool against itself grown, shrunk and moved by one voxel."""
    moved = [dice(mask, np.roll(mask, step, axis)) for axis in range(3) for step in (-1, 1)]
    return {
        "grown": dice(mask, ndimage.binary_dilation(mask)),
        "shrunk": dice(mask, ndimage.binary_erosion(mask)),
        "moved": float(np.mean(moved)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--layout", default="auto")
    parser.add_argument("--spacing", type=float, nargs=3, default=(3.0, 3.0, 3.0))
    args = parser.parse_args()
    spec = PreprocessingSpec(spacing=tuple(args.spacing))
    load = mt.Compose(preprocessing(spec))
    cases = discover(args.layout, args.root).cases
    print(f"spacing {spec.spacing} mm")
    print("| case | label mL | voxels | grown | shrunk | moved |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for case in cases:
        item = load({IMAGE: case[IMAGE], LABEL: case[LABEL]})
        mask = np.asarray(item[LABEL][0]) > 0
        row = one_voxel_errors(mask)
        rows.append(row)
        ml = mask.sum() * float(np.prod(spec.spacing)) / 1000
        figures = " | ".join(f"{v:.3f}" for v in row.values())
        print(f"| {case['case_id']} | {ml:.1f} | {int(mask.sum())} | {figures} |")
    means = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
    print("| mean | | | " + " | ".join(f"{v:.3f}" for v in means.values()) + " |")


if __name__ == "__main__":
    main()
