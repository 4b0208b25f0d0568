"""Network grid -> input grid by separable linear interpolation.

Preprocessing only reorients (axis permutation and flips), resamples along the axes and crops, so
the map from input voxels to network voxels is axis-aligned: every input axis is a scaled and
shifted network axis. Undoing it is then three 1-D interpolations. MONAI's ``Invertd`` undoes the
same chain with a dense ``affine_grid`` + ``grid_sample`` over the full input grid, which needs a
grid as large as the CT and is several times slower
(docs/results.md#what-each-choice-on-the-inference-path-buys).
``Invertd`` remains the path for anything that is not axis-aligned.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _interpolate_axis(volume: torch.Tensor, dim: int, coords: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``volume`` along ``dim`` at fractional ``coords`` (edge values beyond)."""
    n = volume.shape[dim]
    coords = coords.clamp(0, n - 1)
    lower = coords.floor().long()
    upper = (lower + 1).clamp(max=n - 1)
    shape = [1] * volume.ndim
    shape[dim] = -1
    weight = (coords - lower).to(volume.dtype).reshape(shape)
    # Indexing with an index tensor gives what index_select gives, bit for bit, with a much faster
    # CPU kernel on these shapes (docs/results.md#what-each-choice-on-the-inference-path-buys).
    take: list[slice | torch.Tensor] = [slice(None)] * volume.ndim
    take[dim] = lower
    low = volume[tuple(take)]
    take[dim] = upper
    return low.add_(volume[tuple(take)].sub_(low).mul_(weight))


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
    mapping = axis_map(net_affine, input_affine)
    if mapping is None:
        return None
    region = box or [slice(0, int(n)) for n in input_shape]
    stored = (2, 1, 0) if nifti_order else (0, 1, 2)  # input axis held by each stored dim 1..3
    out = volume.permute(0, *(1 + mapping[a][0] for a in stored)).contiguous()
    net_shape = out.shape[1:]

    def pass_order(d: int) -> tuple[int, float]:
        # Shrinking passes first (most shrinking first) keeps the intermediate volumes small; then the
        # growing ones from the innermost dim outwards: the last, full-size pass then gathers whole
        # rows or planes, the fastest order measured (docs/results.md#what-each-choice-on-the-inference-path-buys).
        ratio = (region[stored[d]].stop - region[stored[d]].start) / net_shape[d]
        return (0, ratio) if ratio < 1 else (1, -d)

    dims = sorted(range(3), key=pass_order)
    for d in dims:
        a = stored[d]
        _, scale, offset = mapping[a]
        coords = torch.arange(region[a].start, region[a].stop, dtype=torch.float64) * scale + offset
        out = _interpolate_axis(out, 1 + d, coords)
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
