"""The same scan twice: under two case ids of one set, or in the training and the test set (a leak).

Each scan gets a cheap signature: its voxel grid and, per axial slice of the RAS-oriented volume,
the mean HU of a :data:`BLOCKS` x :data:`BLOCKS` grid of blocks. A copy re-saved with another voxel
type, in another orientation or lightly re-compressed keeps these means to within a few HU; one
cropped by some slices keeps them on the slices it shares. Two scans are the same when, at the
slice offset that matches them best, at least half of the shorter one's slices overlap and their
block means differ by at most :data:`SAME_SCAN_HU` on average; different patients differ by tens to
hundreds of HU (the body outline alone moves whole blocks between air and tissue).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from attnunet.data.findings import ERROR, WARNING, Finding

BLOCKS = 16
SAME_SCAN_HU = 8.0
IDENTICAL_HU = 0.05
MIN_OVERLAP = 0.5


@dataclass(frozen=True)
class ScanSignature:
    """Attributes:
    shape: ``(3,)`` voxels of the RAS-oriented volume.
    spacing: ``(3,)`` voxel size in mm.
    slices: ``(Z, BLOCKS * BLOCKS)`` float32 mean HU per block of each axial slice.
    """

    shape: np.ndarray
    spacing: np.ndarray
    slices: np.ndarray


@dataclass(frozen=True)
class Match:
    """Two scans found to be the same: ``shared`` slices, ``mean_hu`` difference of their block
    means, ``identical`` when the voxels agree everywhere (same slices, differences below rounding)."""

    shared: int
    mean_hu: float
    identical: bool

    def describe(self) -> str:
        if self.identical:
            return "identical voxels"
        return f"{self.shared} slices in common, block means {self.mean_hu:.1f} HU apart"


def signature(image: np.ndarray, spacing: np.ndarray) -> ScanSignature:
    """Signature of a CT ``(X, Y, Z)`` in HU, RAS voxel order, ``spacing`` ``(3,)`` in mm."""
    x, y, z = image.shape
    xs = np.linspace(0, x, BLOCKS + 1).astype(int)
    ys = np.linspace(0, y, BLOCKS + 1).astype(int)
    # Block means by cumulative sums (numpy has no uneven block reduction; volumes rarely divide evenly).
    rows = np.add.reduceat(image, xs[:-1], axis=0, dtype=np.float64)  # (BLOCKS, Y, Z): no full-size copy
    sums = np.add.reduceat(rows, ys[:-1], axis=1)
    counts = np.outer(np.diff(xs), np.diff(ys))[:, :, None]
    means = (sums / np.maximum(counts, 1)).reshape(BLOCKS * BLOCKS, z).T
    return ScanSignature(np.array(image.shape), np.asarray(spacing, dtype=np.float64), means.astype(np.float32))


def compare(a: ScanSignature, b: ScanSignature) -> Match | None:
    """A :class:`Match` when ``a`` and ``b`` are the same scan, else None."""
    if not np.array_equal(a.shape[:2], b.shape[:2]) or not np.allclose(a.spacing, b.spacing, rtol=1e-3):
        return None
    short, long_ = (a, b) if len(a.slices) <= len(b.slices) else (b, a)
    n_short, n_long = len(short.slices), len(long_.slices)
    best: Match | None = None
    # Anchor slices of the shorter scan locate candidate offsets in the longer one; the whole overlap
    # at that offset then decides (a pairwise test of every offset costs Z^2 per pair).
    for anchor in {n_short // 4, n_short // 2, (3 * n_short) // 4}:
        distances = np.abs(long_.slices - short.slices[anchor]).mean(axis=1)
        offset = int(np.argmin(distances)) - anchor  # slice i of short <-> slice i + offset of long
        lo, hi = max(0, -offset), min(n_short, n_long - offset)
        if hi - lo < MIN_OVERLAP * n_short:
            continue
        diff = float(np.abs(short.slices[lo:hi] - long_.slices[lo + offset : hi + offset]).mean())
        if diff <= SAME_SCAN_HU and (best is None or diff < best.mean_hu):
            identical = n_short == n_long and offset == 0 and diff <= IDENTICAL_HU
            best = Match(hi - lo, diff, identical)
    return best


def duplicate_findings(signatures: Mapping[str, ScanSignature]) -> list[Finding]:
    """A warning per pair of cases that hold the same scan, on the later of the two (by name)."""
    findings = []
    for first, second in combinations(sorted(signatures), 2):
        match = compare(signatures[first], signatures[second])
        if match is not None:
            findings.append(
                Finding(second, WARNING, "duplicate", f"same scan as {first} ({match.describe()}): keep one of them")
            )
    return findings


def leak_findings(train: Mapping[str, ScanSignature], test: Mapping[str, ScanSignature]) -> list[Finding]:
    """An error per training case whose scan is also in the test set."""
    findings = []
    for case, sig in train.items():
        for name, other in test.items():
            match = compare(sig, other)
            if match is not None:
                findings.append(
                    Finding(case, ERROR, "test_leak", f"same scan as test case {name} ({match.describe()}): a leak")
                )
    return findings
