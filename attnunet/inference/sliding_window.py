"""Full-volume prediction with MONAI's Gaussian-weighted sliding window.

Shared by validation, evaluation and inference so all three score the same computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from monai.inferers import SliceInferer, SlidingWindowInferer

from attnunet.models.attention_unet import AttentionUNet


@dataclass(frozen=True)
class SlidingWindowSpec:
    """Window size (voxels), overlap fraction, windows per forward pass and blending mode."""

    roi_size: tuple[int, ...] = (64, 64, 64)
    overlap: float = 0.25
    sw_batch_size: int = 4
    mode: str = "gaussian"

    @classmethod
    def from_dict(cls, d: dict) -> SlidingWindowSpec:
        return cls(
            roi_size=tuple(int(v) for v in d["roi_size"]),
            overlap=float(d.get("overlap", 0.25)),
            sw_batch_size=int(d.get("sw_batch_size", 4)),
            mode=str(d.get("mode", "gaussian")),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["roi_size"] = list(self.roi_size)
        return d


def inferer(net: AttentionUNet, spec: SlidingWindowSpec) -> SlidingWindowInferer:
    """3D windows for a 3D net; for a 2D net, 2D windows over each axial slice (MONAI SliceInferer)."""
    common = {"sw_batch_size": spec.sw_batch_size, "overlap": spec.overlap, "mode": spec.mode}
    if net.spatial_dims == 2:
        return SliceInferer(spatial_dim=2, roi_size=tuple(spec.roi_size[:2]), **common)
    return SlidingWindowInferer(roi_size=spec.roi_size, **common)


def predict_logits(net: AttentionUNet, image: torch.Tensor, spec: SlidingWindowSpec) -> torch.Tensor:
    """``(B, C, X, Y, Z)`` volume -> ``(B, num_classes, X, Y, Z)`` logits, blended over windows."""
    return inferer(net, spec)(image, net)


def predict_with_attention(
    net: AttentionUNet, image: torch.Tensor, spec: SlidingWindowSpec
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits ``(B, K, *S)`` and, per gate, alpha ``(B, 1, *S)`` blended over windows.

    MONAI's inferer blends every element of a tuple output with the same importance map and
    normalises each by the same weight sum, so alpha is averaged over overlapping windows exactly
    as the logits are (tested). Each window's maps are upsampled to the window size first; that
    costs about 1% of the window's forward pass (4 x 64^3 windows of the default model, CPU).
    """
    names = net.attention_names

    def window(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = net.forward_detailed(x)
        maps = net.attention_maps_from(out, x.shape[2:])
        return (out.logits, *(maps[n] for n in names))

    outputs: Sequence[torch.Tensor] = inferer(net, spec)(image, window)
    return outputs[0], dict(zip(names, outputs[1:]))


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """First voxel of each window along one axis of ``size`` voxels, as MONAI's sliding window places
    them (``_get_scan_interval`` and ``dense_patch_slices``): every ``int(roi * (1 - overlap))``
    voxels, the last one moved back to end at the edge."""
    if size <= roi:
        return [0]
    step = max(1, int(roi * (1 - overlap)))
    count = next(i for i in range(size) if i * step + roi >= size) + 1
    return [min(i * step, size - roi) for i in range(count)]


@dataclass(frozen=True)
class Slab:
    """One piece of a slab-wise sliding window along one axis of the network grid.

    Attributes:
        run: the planes the windows of this slab cover (the sub-volume handed to MONAI's inferer).
        final: the planes whose every covering window lies in ``run``: their blended values equal
            the one-piece run's. Consecutive slabs' ``final`` ranges overlap by at least one plane,
            so the linear interpolation back to the input grid always finds both neighbours final.
    """

    run: slice
    final: slice


def slabs(size: int, roi: int, overlap: float, slab_size: int) -> list[Slab]:
    """Cut ``size`` planes into slabs of about ``slab_size`` planes (at least one window) whose
    windows are exactly the one-piece run's.

    A slab starts at a regular window start and ends at a window end, so MONAI's inferer on it
    places its windows where the one-piece run does; the planes within reach of a window outside
    the slab are not final. The next slab starts early enough to make its first final plane at most
    the last final plane but one of this slab: windows near slab borders run twice (the cost)."""
    starts = window_starts(size, roi, overlap)
    if len(starts) == 1 or slab_size >= size:
        return [Slab(slice(0, size), slice(0, size))]
    rows_per_slab = max(1, (slab_size - roi) // max(1, starts[1] - starts[0]) + 1)
    out: list[Slab] = []
    first = 0
    while True:
        last = min(first + rows_per_slab, len(starts)) - 1
        lo = 0 if first == 0 else starts[first - 1] + roi
        hi = size if last == len(starts) - 1 else starts[last + 1]
        if hi == size:
            return [*out, Slab(slice(starts[first], size), slice(lo, hi))]
        # The next slab's first final plane, starts[next - 1] + roi, must be at most hi - 1.
        following = [i for i in range(first + 1, last + 2) if starts[i - 1] + roi <= hi - 1]
        if not following:  # too few rows to make progress: take one more window row per slab
            rows_per_slab += 1
            continue
        out.append(Slab(slice(starts[first], starts[last] + roi), slice(lo, hi)))
        first = following[-1]
