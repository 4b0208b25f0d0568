"""Slice pictures: windowed CT, label contours and attention heat maps as RGB arrays."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LABEL_COLOURS = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.2, 0.2], [0.2, 0.6, 1.0], [0.2, 1.0, 0.3], [1.0, 0.9, 0.2]])


def grey(ct: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` windowed CT in [0, 1] -> ``(3, H, W)``."""
    return ct.clamp(0, 1).float().expand(3, *ct.shape).clone()


def hot(alpha: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` values in [0, 1] -> ``(3, H, W)`` black-red-yellow-white colour map."""
    a = alpha.clamp(0, 1).float()
    return torch.stack([(3 * a).clamp(0, 1), (3 * a - 1).clamp(0, 1), (3 * a - 2).clamp(0, 1)])


def heat_overlay(ct: torch.Tensor, alpha: torch.Tensor, strength: float = 0.6) -> torch.Tensor:
    """CT slice with alpha blended on top, weighted by alpha itself so the CT stays readable."""
    w = strength * alpha.clamp(0, 1).float()
    return (1 - w) * grey(ct) + w * hot(alpha)


def label_overlay(ct: torch.Tensor, labels: torch.Tensor, fill: float = 0.35) -> torch.Tensor:
    """CT slice with each label tinted and its contour drawn at full colour. ``labels``: ``(H, W)`` int."""
    rgb = grey(ct)
    lab = labels.long()
    for k in range(1, int(lab.max().item()) + 1 if lab.numel() else 1):
        mask = (lab == k).float()
        if not mask.any():
            continue
        colour = LABEL_COLOURS[min(k, len(LABEL_COLOURS) - 1)].view(3, 1, 1)
        eroded = -F.max_pool2d(-mask[None, None], 3, stride=1, padding=1)[0, 0]
        contour = (mask - eroded).clamp(0, 1)
        rgb = rgb * (1 - fill * mask) + colour * fill * mask
        rgb = rgb * (1 - contour) + colour * contour
    return rgb


def centroid_index(label: torch.Tensor, axis: int) -> int:
    """Index along ``axis`` of the foreground centroid of a label volume (the middle when empty)."""
    fg = torch.nonzero(label > 0)
    if len(fg) == 0:
        return label.shape[axis] // 2
    return int(fg[:, axis].float().mean().round().item())


def to_display(slice_2d: torch.Tensor) -> torch.Tensor:
    """RAS ``(X, Y)`` axial slice -> ``(H, W)`` in radiological view (anterior up, patient right on the left)."""
    return torch.flip(slice_2d.transpose(0, 1), dims=(0, 1))
