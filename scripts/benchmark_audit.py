"""Dataset audit cost on full-size CTs, against the training preprocessing of the same cases.

Writes ``--cases`` full-size scans (the real test CT resampled to 512 x 512 in-plane at 0.78 mm and
2.5 mm slices, each one shifted so that they are different scans, int16 NIfTI as public sets ship
them) with their labels, then times per case: reading the pair through the training checks, the
audit's measurements (``audit_case``), and the training preprocessing (read, 2 mm resampling, body
crop, HU window: what ``data.cache`` stores), the reference measured in the same run. Peak memory of
the audit's own arrays is traced with ``tracemalloc``. The last rows: the cross-case part (findings,
duplicate pairs, on different scans of one grid: the costly kind) and a cache hit for a
``--set-size`` dataset (every case's audit read back from ``check.cache_dir``), both from copies of
this run's cases.

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
from attnunet.data.dataset_audit import CaseAudit, audit_case, audit_findings
from attnunet.data.duplicates import ScanSignature
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


class Clock:
    """Wall and CPU seconds of a block (the CPU time shows the cost on a machine shared with other jobs)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--set-size", type=int, default=281)
    args = parser.parse_args()
    rows: dict[str, list[Clock]] = {"read": [], "audit": [], "preprocessing": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = write_cases(folder, args.cases)
        peaks, audits = [], {}
        pairs = load_pairs(cases, len(NAMES))
        for _ in cases:
            with Clock() as read:
                case_id, loaded = next(pairs)
            rows["read"].append(read)
            tracemalloc.start()
            with Clock() as audit:
                audits[case_id] = audit_case(loaded, NAMES)
            rows["audit"].append(audit)
            peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.stop()
        shape = loaded.image.shape
        prep = mt.Compose(preprocessing(PreprocessingSpec(), num_labels=len(NAMES)))
        for case in cases:
            with Clock() as clock:
                prep({IMAGE: case[IMAGE], LABEL: case[LABEL]})
            rows["preprocessing"].append(clock)
        # Cross-case work grows with the pairs; measured on copies of this run's audits whose block
        # means are shuffled, so that they are different scans on the same grid (the costly kind).
        rng = np.random.default_rng(0)
        many = {}
        for i in range(args.set_size):
            audit = audits[f"case{i % args.cases}"]
            sig = audit.signature
            other = ScanSignature(sig.shape, sig.spacing, sig.slices[:, rng.permutation(sig.slices.shape[1])])
            many[f"c{i}"] = CaseAudit(audit.placements, audit.labels, other)
        with Clock() as cross:
            audit_findings(many, NAMES)
        cache = folder / "cache"
        for case in cases:
            audit_cache.save(audit_cache.cache_path(cache, case, NAMES), audits[case["case_id"]])
        with Clock() as hit:
            for i in range(args.set_size):
                audit_cache.load(audit_cache.cache_path(cache, cases[i % args.cases], NAMES))

    def mean(name: str, kind: str) -> float:
        return float(np.mean([getattr(c, kind) for c in rows[name]]))

    print(f"{args.cases} cases of {shape[0]} x {shape[1]} x {shape[2]} voxels ({FULL_SPACING.tolist()} mm)\n")
    print("| step | wall s per case | CPU s per case | peak memory of its own arrays |")
    print("| --- | --- | --- | --- |")
    print(f"| read the pair (training checks) | {mean('read', 'wall'):.2f} | {mean('read', 'cpu'):.2f} | |")
    audit_row = f"{mean('audit', 'wall'):.2f} | {mean('audit', 'cpu'):.2f} | {max(peaks):.0f} MiB"
    print(f"| audit measurements (audit_case) | {audit_row} |")
    prep_row = f"{mean('preprocessing', 'wall'):.2f} | {mean('preprocessing', 'cpu'):.2f}"
    print(f"| training preprocessing (reference) | {prep_row} | |")
    print(f"\naudit / preprocessing (CPU): {mean('audit', 'cpu') / mean('preprocessing', 'cpu'):.2f}")
    print(f"findings over {args.set_size} cases: {cross.wall:.2f} s wall, {cross.cpu:.2f} s CPU")
    print(f"cache hit for {args.set_size} cases (every audit read back): {hit.wall:.2f} s wall, {hit.cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
