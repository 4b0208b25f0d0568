"""Dataset audit cost on full-size CTs, against the training preprocessing of the same cases.

Writes ``--cases`` full-size scans (the real test CT resampled to 512 x 512 in-plane at 0.78 mm and
2.5 mm slices, each one shifted so that they are different scans, int16 NIfTI as public sets ship
them) with their labels, then times per case: reading the pair through the training checks, the
audit's measurements (``audit_case``), and the training preprocessing (read, 2 mm resampling, body
crop, HU window: what ``data.cache`` stores), the reference measured in the same run. Peak memory of
the audit's own arrays is traced with ``tracemalloc``. The last rows: the cross-case part
(findings, duplicate pairs) and a cache hit for a ``--set-size`` dataset (every case's audit read
back from ``check.cache_dir``), both extrapolated from this run's cases.

    python scripts/benchmark_audit.py --cases 3 --set-size 281
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
from monai import transforms as mt
from scipy import ndimage

from attnunet.data import audit_cache
from attnunet.data.dataset_audit import audit_case, audit_findings
from attnunet.data.fingerprint import load_pairs
from attnunet.data.transforms import IMAGE, LABEL, PreprocessingSpec, preprocessing

ROOT = Path(__file__).resolve().parents[1]
NAMES = {0: "background", 1: "pancreas"}
FULL_SPACING = np.array([0.78, 0.78, 2.5])


def write_cases(folder: Path, count: int) -> list[dict[str, str]]:
    """``count`` full-size image/label pairs, each the real CT shifted by a few voxels."""
    img = nib.load(ROOT / "tests" / "data" / "abdomen_ct.nii.gz")
    ct = np.asanyarray(img.dataobj).astype(np.float32)
    label = np.asanyarray(nib.load(ROOT / "tests" / "data" / "abdomen_pancreas.nii.gz").dataobj)
    zoom = np.array([512 / ct.shape[0], 512 / ct.shape[1], 3.0 / FULL_SPACING[2]])
    big = ndimage.zoom(ct, zoom, order=1).astype(np.int16)
    big_label = ndimage.zoom(label, zoom, order=0)
    affine = np.diag([*(3.0 / zoom), 1.0])
    cases = []
    for i in range(count):
        shift = 6 * i
        image = np.full_like(big, -1024)
        image[shift:] = big[: big.shape[0] - shift]
        lab = np.zeros_like(big_label)
        lab[shift:] = big_label[: big.shape[0] - shift]
        paths = {k: folder / f"{k}_{i}.nii.gz" for k in (IMAGE, LABEL)}
        nib.save(nib.Nifti1Image(image, affine), paths[IMAGE])
        nib.save(nib.Nifti1Image(lab, affine), paths[LABEL])
        cases.append({IMAGE: str(paths[IMAGE]), LABEL: str(paths[LABEL]), "case_id": f"case{i}"})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--set-size", type=int, default=281)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = write_cases(folder, args.cases)
        read_s, audit_s, peaks, audits = [], [], [], {}
        start = time.perf_counter()
        for case_id, loaded in load_pairs(cases, len(NAMES)):
            read_s.append(time.perf_counter() - start)
            tracemalloc.start()
            t = time.perf_counter()
            audits[case_id] = audit_case(loaded, NAMES)
            audit_s.append(time.perf_counter() - t)
            peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.stop()
            start = time.perf_counter()
        shape = loaded.image.shape
        prep = mt.Compose(preprocessing(PreprocessingSpec(), num_labels=len(NAMES)))
        prep_s = []
        for case in cases:
            t = time.perf_counter()
            prep({IMAGE: case[IMAGE], LABEL: case[LABEL]})
            prep_s.append(time.perf_counter() - t)
        # Cross-case work grows with the pairs; measured here on copies of this run's audits.
        many = {f"c{i}": audits[f"case{i % args.cases}"] for i in range(args.set_size)}
        t = time.perf_counter()
        audit_findings(many, NAMES)
        cross_s = time.perf_counter() - t
        cache = folder / "cache"
        for case in cases:
            audit_cache.save(audit_cache.cache_path(cache, case, NAMES), audits[case["case_id"]])
        t = time.perf_counter()
        for i in range(args.set_size):
            case = cases[i % args.cases]
            audit_cache.load(audit_cache.cache_path(cache, case, NAMES))
        hit_s = time.perf_counter() - t

    audit, prep_mean = float(np.mean(audit_s)), float(np.mean(prep_s))
    print(f"{args.cases} cases of {shape[0]} x {shape[1]} x {shape[2]} voxels ({FULL_SPACING.tolist()} mm)\n")
    print("| step | seconds per case | peak memory of its own arrays |")
    print("| --- | --- | --- |")
    print(f"| read the pair (training checks) | {np.mean(read_s):.2f} | |")
    print(f"| audit measurements (audit_case) | {audit:.2f} | {max(peaks):.0f} MiB |")
    print(f"| training preprocessing (reference) | {prep_mean:.2f} | |")
    print(f"\naudit / preprocessing: {audit / prep_mean:.2f}")
    print(f"findings over {args.set_size} cases (duplicate pairs included): {cross_s:.2f} s")
    print(f"cache hit for {args.set_size} cases (read every audit back): {hit_s:.2f} s")


if __name__ == "__main__":
    main()
