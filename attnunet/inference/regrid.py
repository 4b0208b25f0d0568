"""Network grid -> input grid by separable linear interpolation.

Preprocessing only reorients (axis permutation and flips), resamples along the axes and crops, so
the map from input voxels to network voxels is axis-aligned: every input axis is a scaled and
shifted network axis. Undoing it is then three 1-D interpolations. MONAI's ``Invertd`` undoes the
same chain with a dense ``affine_grid`` + ``grid_sample`` over the full input grid, which needs a
grid as large as the CT and is several times slower
(docs/explanation/inference-path.md#what-each-choice-buys-measured).
``Invertd`` remains the path for anything that is not axis-aligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

AXIS_TOLERANCE = 1e-6


def axis_map(net_affine: np.ndarray, input_affine: np.ndarray) -> list[tuple[int, float, float]] | None:
    """For each input axis ``a``: ``(q, scale, offset)`` with network coordinate along axis ``q`` =
    ``scale * i_a + offset``; ``None`` when the two grids are not axis-aligned to each other."""
    m = np.linalg.inv(np.asarray(net_affine, dtype=np.float64)) @ np.asarray(input_affine, dtype=np.float64)
    block = m[:3, :3]
    big = np.abs(block) > AXIS_TOLERANCE * max(1.0, float(np.abs(block).max()))
    if not (big.sum(0) == 1).all() or not (big.sum(1) == 1).all():
        return None
    mapping = []
    for a in range(3):
        q = int(np.flatnonzero(big[:, a])[0])
        mapping.append((q, float(block[q, a]), float(m[q, 3])))
    return mapping


def interpolate_axis(volume: torch.Tensor, dim: int, coords: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``volume`` along ``dim`` at fractional ``coords`` (edge values beyond)."""
    n = volume.shape[dim]
    coords = coords.clamp(0, n - 1)
    lower = coords.floor().long()
    upper = (lower + 1).clamp(max=n - 1)
    shape = [1] * volume.ndim
    shape[dim] = -1
    weight = (coords - lower).to(volume.dtype).reshape(shape)
    # Indexing with an index tensor gives what index_select gives, bit for bit, with a much faster
    # CPU kernel on these shapes (docs/explanation/inference-path.md#what-each-choice-buys-measured).
    take: list[slice | torch.Tensor] = [slice(None)] * volume.ndim
    take[dim] = lower
    low = volume[tuple(take)]
    take[dim] = upper
    return low.add_(volume[tuple(take)].sub_(low).mul_(weight))


@dataclass(frozen=True)
class RegridPlan:
    """How network-grid values go back onto input voxels, fixed once per case so that the input
    voxels can be filled piece by piece with the very values the whole box would get.

    Attributes:
        mapping: per input axis, ``(network axis, scale, offset)`` (:func:`axis_map`).
        region: the input voxels to fill, one slice per input axis.
        net_shape: the whole network grid's shape, in network axis order.
        stored: the input axis held by each stored dim ``1..3`` of the result.
        passes: the stored dims in the order they are interpolated.
    """

    mapping: list[tuple[int, float, float]]
    region: tuple[slice, ...]
    net_shape: tuple[int, ...]
    stored: tuple[int, int, int]
    passes: tuple[int, ...]

    @classmethod
    def create(
        cls,
        net_affine: np.ndarray,
        input_affine: np.ndarray,
        input_shape: Sequence[int],
        net_shape: Sequence[int],
        box: Sequence[slice] | None = None,
        nifti_order: bool = False,
    ) -> RegridPlan | None:
        """The plan for ``box`` (default: the whole input grid); ``None`` when the grids are not
        axis-aligned."""
        mapping = axis_map(net_affine, input_affine)
        if mapping is None:
            return None
        region = tuple(box or [slice(0, int(n)) for n in input_shape])
        stored = (2, 1, 0) if nifti_order else (0, 1, 2)

        def pass_order(d: int) -> tuple[int, float]:
            # Shrinking passes first (most shrinking first) keeps the intermediate volumes small; then the
            # growing ones from the innermost dim outwards: the last, full-size pass then gathers whole
            # rows or planes, the fastest order measured
            # (docs/explanation/inference-path.md#what-each-choice-buys-measured).
            a = stored[d]
            ratio = (region[a].stop - region[a].start) / net_shape[mapping[a][0]]
            return (0, ratio) if ratio < 1 else (1, -d)

        passes = tuple(sorted(range(3), key=pass_order))
        return cls(mapping, region, tuple(int(n) for n in net_shape), stored, passes)

    def coords(self, a: int, indices: slice) -> torch.Tensor:
        """Network coordinates (float64) of input ``indices`` along input axis ``a``, clamped to the
        network grid (values beyond it take the edge value)."""
        q, scale, offset = self.mapping[a]
        coords = torch.arange(indices.start, indices.stop, dtype=torch.float64) * scale + offset
        return coords.clamp(0, self.net_shape[q] - 1)

    def split(self, a: int, net_starts: Sequence[int]) -> list[slice]:
        """``region`` along input axis ``a`` cut where the network coordinate reaches each of
        ``net_starts`` (ascending): piece ``k`` holds the voxels whose coordinate lies in
        ``[net_starts[k], net_starts[k + 1])``, so its interpolation needs network planes from
        ``net_starts[k]`` to ``net_starts[k + 1]`` only."""
        coords = self.coords(a, self.region[a]).numpy()
        if self.mapping[a][1] < 0:  # coordinates fall along the axis: cut from the far end
            cuts = [self.region[a].start + int(np.count_nonzero(coords >= s)) for s in net_starts[1:]]
            bounds = [self.region[a].stop, *cuts, self.region[a].start]
            return [slice(lo, hi) for hi, lo in zip(bounds, bounds[1:])]
        cuts = [self.region[a].start + int(np.count_nonzero(coords < s)) for s in net_starts[1:]]
        bounds = [self.region[a].start, *cuts, self.region[a].stop]
        return [slice(lo, hi) for lo, hi in zip(bounds, bounds[1:])]

    def resample(
        self, volume: torch.Tensor, region: Sequence[slice] | None = None, net_origin: Sequence[int] = (0, 0, 0)
    ) -> torch.Tensor:
        """``volume`` ``(C, *S)``: the network grid, or the part of it from ``net_origin`` (network
        axis order) on that holds every plane ``region``'s interpolation reads -> ``(C, *region
        shape)`` in the stored layout (see :func:`to_input_grid`).

        The passes run in :attr:`passes` order whatever the region, and each output voxel is
        computed from the same network values with the same float operations (the integer shift
        by ``net_origin`` is exact), so pieces put together equal the whole box bit for bit."""
        region = tuple(region or self.region)
        out = volume.permute(0, *(1 + self.mapping[a][0] for a in self.stored)).contiguous()
        for d in self.passes:
            a = self.stored[d]
            out = interpolate_axis(out, 1 + d, self.coords(a, region[a]) - net_origin[self.mapping[a][0]])
        return out

    def pieces(self, max_voxels: int, region: Sequence[slice] | None = None) -> list[tuple[slice, ...]]:
        """``region`` (default: the plan's) cut along the input axis of the first pass into pieces of
        at most about ``max_voxels`` input voxels each (at least one plane)."""
        region = tuple(region or self.region)
        a = self.stored[self.passes[0]]
        plane = max(1, int(np.prod([s.stop - s.start for i, s in enumerate(region) if i != a])))
        step = max(1, max_voxels // plane)
        along = region[a]
        return [
            tuple(slice(i, min(i + step, along.stop)) if j == a else s for j, s in enumerate(region))
            for i in range(along.start, along.stop, step)
        ]

    def resample_piece(
        self, volume: torch.Tensor, piece: Sequence[slice], net_origin: Sequence[int] = (0, 0, 0)
    ) -> torch.Tensor:
        """:meth:`resample` of one of :meth:`pieces`, reading only the network planes it needs
        along the first pass (``volume``: the network grid from ``net_origin`` on)."""
        a = self.stored[self.passes[0]]
        q = self.mapping[a][0]
        coords = self.coords(a, piece[a])
        lo = int(coords.min().floor())
        hi = min(int(coords.max().floor()) + 1, self.net_shape[q] - 1)
        origin = list(net_origin)
        origin[q] = lo
        return self.resample(volume.narrow(1 + q, lo - net_origin[q], hi - lo + 1), piece, origin)


def to_input_grid(
    volume: torch.Tensor,
    net_affine: np.ndarray,
    input_affine: np.ndarray,
    input_shape: Sequence[int],
    box: Sequence[slice] | None = None,
    nifti_order: bool = False,
) -> torch.Tensor | None:
    """Resample ``volume`` ``(C, *S_net)`` onto the input grid ``(C, *input_shape)``, or only onto
    the input voxels of ``box`` (three slices with start and stop): ``(C, *box_shape)``.

    Values beyond the network grid (air cropped away, sub-voxel margins) take the nearest edge
    value, so probabilities still sum to one there. Returns ``None`` when the grids are not
    axis-aligned (the caller then uses ``Invertd``).

    The result is indexed ``(C, X, Y, Z)`` either way; its memory is C-contiguous, or with
    ``nifti_order`` each channel is Fortran-ordered (first axis fastest, NIfTI's voxel order: the
    tensor is a transposed view of a contiguous ``(C, Z, Y, X)``), so the writer needs no transpose
    of the full-size output. The small network-grid volume is permuted into the wanted axis order
    before the passes, so the full-size passes write that layout directly.
    """
    plan = RegridPlan.create(net_affine, input_affine, input_shape, volume.shape[1:], box, nifti_order)
    if plan is None:
        return None
    out = plan.resample(volume)
    return out.permute(0, 3, 2, 1) if nifti_order else out


def network_box(
    net_affine: np.ndarray, input_affine: np.ndarray, net_shape: Sequence[int], input_shape: Sequence[int]
) -> tuple[slice, slice, slice] | None:
    """The input voxels the network grid covers: those whose centre lies within the network
    voxels' extent (their centres +- half a voxel) along every axis; everything else was cropped
    away before the network ran. ``None`` when the grids are not axis-aligned."""
    mapping = axis_map(net_affine, input_affine)
    if mapping is None:
        return None
    box = []
    for a, (q, scale, offset) in enumerate(mapping):
        coords = np.arange(int(input_shape[a])) * scale + offset
        inside = np.flatnonzero((coords >= -0.5 - AXIS_TOLERANCE) & (coords <= net_shape[q] - 0.5 + AXIS_TOLERANCE))
        box.append(slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0))
    return box[0], box[1], box[2]
