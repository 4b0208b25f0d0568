"""Full-volume prediction with MONAI's Gaussian-weighted sliding window.

Shared by validation, evaluation and inference so all three score the same computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


Outputs = torch.Tensor | tuple[torch.Tensor, ...]


class SkipUniformWindows:
    """Window predictor that runs the network only once per distinct uniform window.

    A window whose voxels all hold one value (air below the HU window, which preprocessing maps to
    exactly 0, or the inferer's zero padding) always gives the same network output, so that output
    is computed once per value and reused: the result is the network's own, not an approximation.
    MONAI's inferers have no such option, hence this wrapper around the predictor they call.

    Args:
        predictor: ``(N, C, *roi)`` windows -> a tensor or a tuple of tensors, each ``(N, ...)``.
    """

    def __init__(self, predictor: Callable[[torch.Tensor], Outputs]) -> None:
        self.predictor = predictor
        self.cache: dict[tuple, Outputs] = {}
        self.windows_run = 0
        self.windows_reused = 0

    def __call__(self, windows: torch.Tensor) -> Outputs:
        values = windows.flatten(2)
        low, high = values.amin(2), values.amax(2)  # (N, C)
        uniform = (low == high).all(1).tolist()
        if not any(uniform):
            self.windows_run += len(uniform)
            return self.predictor(windows)
        varied = [i for i, u in enumerate(uniform) if not u]
        parts: list[Outputs | None] = [None] * len(uniform)
        if varied:
            computed = self.predictor(windows[varied])
            for row, i in enumerate(varied):
                parts[i] = _select(computed, row)
        for i in (i for i, u in enumerate(uniform) if u):
            key = (tuple(low[i].tolist()), tuple(windows.shape[1:]), windows.dtype, windows.device)
            if key not in self.cache:
                self.cache[key] = _select(self.predictor(windows[i : i + 1]), 0)
                self.windows_run += 1
            else:
                self.windows_reused += 1
            parts[i] = self.cache[key]
        self.windows_run += len(varied)
        return _stack(parts)


def _select(outputs: Outputs, row: int) -> Outputs:
    """Row ``row`` of every output, keeping a leading batch dimension of 1."""
    if isinstance(outputs, torch.Tensor):
        return outputs[row : row + 1]
    return tuple(o[row : row + 1] for o in outputs)


def _stack(parts: list) -> Outputs:
    """Concatenate per-window outputs (each with a batch dimension of 1) back into one batch."""
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return tuple(torch.cat([p[k] for p in parts]) for k in range(len(parts[0])))


def predict_logits(net: AttentionUNet, image: torch.Tensor, spec: SlidingWindowSpec) -> torch.Tensor:
    """``(B, C, X, Y, Z)`` volume -> ``(B, num_classes, X, Y, Z)`` logits, blended over windows."""
    return inferer(net, spec)(image, SkipUniformWindows(net))


def predict_with_attention(
    net: AttentionUNet, image: torch.Tensor, spec: SlidingWindowSpec
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits ``(B, K, *S)`` and, per gate, alpha ``(B, 1, *S)`` blended over windows."""
    names = net.attention_names

    def window(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = net.forward_detailed(x)
        maps = net.attention_maps_from(out, x.shape[2:])
        return (out.logits, *(maps[n] for n in names))

    outputs: Sequence[torch.Tensor] = inferer(net, spec)(image, SkipUniformWindows(window))
    return outputs[0], dict(zip(names, outputs[1:]))
