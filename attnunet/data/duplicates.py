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
from typing import Any

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
    # One slab of x at a time: a float64 sum over the whole volume would cast it whole (8 bytes a voxel).
    rows = np.stack([image[a:b].sum(axis=0, dtype=np.float64) for a, b in zip(xs[:-1], xs[1:])])  # (BLOCKS, Y, Z)
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
    coarse_short, coarse_long = _coarse(short.slices), _coarse(long_.slices)
    for anchor in {n_short // 4, n_short // 2, (3 * n_short) // 4}:
        # Means of 4 x 4 blocks first: their distance never exceeds the full one (the mean of a
        # difference is at most the mean of its size), so most different scans stop here at 1/16 the cost.
        if np.abs(coarse_long - coarse_short[anchor]).mean(axis=1).min() > SAME_SCAN_HU:
            continue
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


def _coarse(slices: np.ndarray) -> np.ndarray:
    """``(Z, BLOCKS * BLOCKS)`` block means -> ``(Z, 16)`` means of 4 x 4 groups of blocks."""
    z = len(slices)
    grid = slices.reshape(z, 4, BLOCKS // 4, 4, BLOCKS // 4)
    return grid.mean(axis=(2, 4)).reshape(z, 16)


def duplicate_findings(signatures: Mapping[str, ScanSignature]) -> list[Finding]:
    """A warning per pair of cases that hold the same scan, on the later of the two (by name)."""
    findings = []
    for first, second in sorted(_candidate_pairs(signatures)):
        match = compare(signatures[first], signatures[second])
        if match is not None:
            findings.append(
                Finding(second, WARNING, "duplicate", f"same scan as {first} ({match.describe()}): keep one of them")
            )
    return findings


def _candidate_pairs(signatures: Mapping[Any, ScanSignature]) -> set[tuple[Any, Any]]:
    """Pairs (by name, in order) on one grid where a slice of one is within :data:`SAME_SCAN_HU` of
    an anchor slice of the other in 4 x 4 block means: all that :func:`compare` can match. One
    array operation per scan and anchor instead of one :func:`compare` per pair (a 281-case set of
    one grid has 39,000 pairs)."""
    groups: dict[tuple, list[str]] = {}
    for name, sig in signatures.items():
        groups.setdefault((*sig.shape[:2].tolist(), *np.round(sig.spacing, 2).tolist()), []).append(name)
    pairs = set()
    for names in groups.values():
        if len(names) < 2:
            continue
        coarse = [_coarse(signatures[n].slices) for n in names]
        every_slice, owner = np.concatenate(coarse), np.repeat(np.arange(len(names)), [len(c) for c in coarse])
        for i, slices in enumerate(coarse):
            for anchor in {len(slices) // 4, len(slices) // 2, (3 * len(slices)) // 4}:
                close = np.abs(every_slice - slices[anchor]).mean(axis=1) <= SAME_SCAN_HU
                pairs |= {tuple(sorted((names[i], names[j]))) for j in np.unique(owner[close]) if j != i}
    return pairs


def leak_findings(train: Mapping[str, ScanSignature], test: Mapping[str, ScanSignature]) -> list[Finding]:
    """An error per training case whose scan is also in the test set."""
    both = {("test", k): v for k, v in test.items()} | {("train", k): v for k, v in train.items()}
    findings = []
    for (side, name), (other_side, case) in sorted(_candidate_pairs(both)):  # ("test", .) sorts first
        if side == other_side:
            continue
        match = compare(train[case], test[name])
        if match is not None:
            findings.append(
                Finding(case, ERROR, "test_leak", f"same scan as test case {name} ({match.describe()}): a leak")
            )
    return findings
