"""Additive grid attention gate of Oktay et al. (2018), 2D and 3D.

MONAI's ``AttentionBlock`` computes its coefficients on the skip's own grid from an upsampled
gating signal; the paper instead strides theta(x) down onto the coarser gating grid and resamples
alpha back up, which is what this module does (see docs/explanation/model.md for every difference).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from attnunet.models.layers import conv_nd, interpolation_mode, norm_nd


class AttentionGate(nn.Module):
    """Soft attention on a skip connection, gated by the next coarser decoder level.

    For skip features ``x`` of shape ``(B, C_x, *S)`` and a gating signal ``g`` of shape
    ``(B, C_g, *S_g)`` (``S_g`` = ``S`` / ``stride``):

    1. ``theta_x = Conv(x; kernel = stride, no bias)`` -> ``(B, C_int, *S_g)``
    2. ``phi_g = Conv1x1(g)`` -> ``(B, C_int, *S_g)`` (resampled to theta's size if it differs)
    3. ``q = ReLU(theta_x + phi_g)``
    4. ``alpha = sigmoid(psi(q))`` with ``psi`` a 1x1 conv to one channel -> ``(B, 1, *S_g)``
    5. ``alpha`` is resampled (bi/trilinear) to ``S``; ``y = alpha * x``
    6. output ``Norm(Conv1x1(y))`` -> ``(B, C_x, *S)``

    Args:
        spatial_dims: 2 or 3.
        skip_channels: ``C_x``.
        gating_channels: ``C_g``.
        inter_channels: ``C_int``; default ``C_x // 2`` (at least 1), the fallback of the
            authors' gate layer. Their released 3D networks pass ``C_x`` instead; why attnunet
            keeps the halved width is in docs/explanation/model.md.
        stride: grid ratio between ``x`` and ``g`` per axis (int or sequence), usually 2.
        norm: ``instance`` or ``batch`` for the output normalisation.

    ``forward`` returns ``(gated x, alpha)`` with alpha on x's grid, shape ``(B, 1, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        skip_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        stride: int | Sequence[int] = 2,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        conv = conv_nd(spatial_dims)
        inter = inter_channels or max(skip_channels // 2, 1)
        self.mode = interpolation_mode(spatial_dims)
        self.theta = conv(skip_channels, inter, kernel_size=stride, stride=stride, bias=False)
        self.phi = conv(gating_channels, inter, kernel_size=1, bias=True)
        self.psi = conv(inter, 1, kernel_size=1, bias=True)
        self.output = nn.Sequential(
            conv(skip_channels, skip_channels, kernel_size=1, bias=True),
            norm_nd(norm, spatial_dims, skip_channels),
        )

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta_x = self.theta(x)
        phi_g = self.phi(g)
        if phi_g.shape[2:] != theta_x.shape[2:]:
            phi_g = F.interpolate(phi_g, size=theta_x.shape[2:], mode=self.mode, align_corners=False)
        coarse_alpha = torch.sigmoid(self.psi(F.relu(theta_x + phi_g)))
        alpha = F.interpolate(coarse_alpha, size=x.shape[2:], mode=self.mode, align_corners=False)
        return self.output(alpha * x), alpha
