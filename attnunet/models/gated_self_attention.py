"""Self-attention with a forget gate over the voxels of a feature map (the U-Net bottleneck).

Every voxel of the coarsest feature map is a node of a fully connected graph. Multi-head scaled
dot-product attention aggregates the nodes (PyTorch's fused ``scaled_dot_product_attention``); a
sigmoid gate computed from the input tokens then decides, per token and channel, how much of the
aggregated message to keep, before the output projection and the residual connection:

    t = LayerNorm(tokens(x))                  (B, N, C), N = prod(S)
    q, k, v = t W_q, t W_k, t W_v             (B, h, N, C/h)
    a = softmax(q k^T / sqrt(C/h)) v          (B, h, N, C/h) -> (B, N, C)
    f = sigmoid(t W_f + b_f)                  (B, N, C), the forget gate in [0, 1]
    y = x + untokens((f * a) W_o + b_o)       (B, C, *S)

The gate has the shape of the attended output (``N x C``), so the product is element-wise; the
N x N score matrix is never multiplied by it. ``gated=False`` drops the gate (``f = 1``): the plain
self-attention of the ablation. Cost: ``O(N^2 C)`` time and, with the fused kernel, ``O(N C)`` memory;
at the bottleneck of a 96^3 patch (6^3 = 216 tokens, C = 256) this is negligible next to the convs.

Position: ``position="conv"`` adds a depth-wise 3^d convolution of ``x`` before tokenising (a
conditional position encoding that works for any input size, unlike a learned table); ``"none"``
leaves the attention permutation-invariant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnunet.models.layers import conv_nd

POSITIONS = ("none", "conv")


class GatedSelfAttention(nn.Module):
    """Args:
    spatial_dims: 2 or 3.
    channels: ``C``; must be divisible by ``heads``.
    heads: attention heads.
    gated: use the forget gate (False: plain self-attention).
    position: ``conv`` or ``none`` (see module docstring).

    ``forward(x)`` with ``x`` of shape ``(B, C, *S)`` returns ``(y, gate_map)``: ``y`` of the same
    shape and ``gate_map`` ``(B, 1, *S)``, the gate averaged over channels (ones when ungated).
    """

    def __init__(
        self, spatial_dims: int, channels: int, heads: int = 4, gated: bool = True, position: str = "conv"
    ) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        self.heads = heads
        self.gated = gated
        self.position = (
            conv_nd(spatial_dims)(channels, channels, kernel_size=3, padding=1, groups=channels)
            if position == "conv"
            else None
        )
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.forget = nn.Linear(channels, channels) if gated else None
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, *spatial = x.shape
        h = x if self.position is None else x + self.position(x)
        tokens = self.norm(h.flatten(2).transpose(1, 2))  # (B, N, C)
        q, k, v = self.qkv(tokens).view(b, -1, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)  # (B, N, C)
        if self.forget is not None:
            gate = torch.sigmoid(self.forget(tokens))
            attended = gate * attended
        else:
            gate = torch.ones_like(attended)
        y = self.out(attended).transpose(1, 2).reshape(b, c, *spatial)
        gate_map = gate.mean(-1).reshape(b, 1, *spatial)
        return x + y, gate_map
