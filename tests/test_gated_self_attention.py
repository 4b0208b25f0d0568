"""GatedSelfAttention against an explicit (non-fused) computation of its formula."""

from __future__ import annotations

import math

import pytest
import torch

from attnunet.models.attention_unet import AttentionUNet
from attnunet.models.gated_self_attention import GatedSelfAttention


def explicit(block: GatedSelfAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The module docstring's formula with plain matrix products and an explicit softmax."""
    b, c, *spatial = x.shape
    n, heads = math.prod(spatial), block.heads
    d = c // heads
    h = x if block.position is None else x + block.position(x)
    t = h.reshape(b, c, n).transpose(1, 2)
    t = (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + block.norm.eps)
    t = t * block.norm.weight + block.norm.bias
    w_q, w_k, w_v = block.qkv.weight.split(c, dim=0)
    out = torch.zeros(b, n, c, dtype=x.dtype)
    for head in range(heads):
        sl = slice(head * d, (head + 1) * d)
        q, k, v = t @ w_q[sl].T, t @ w_k[sl].T, t @ w_v[sl].T
        scores = q @ k.transpose(1, 2) / math.sqrt(d)
        weights = torch.exp(scores - scores.amax(-1, keepdim=True))
        weights = weights / weights.sum(-1, keepdim=True)
        out[..., sl] = weights @ v
    gate = torch.sigmoid(t @ block.forget.weight.T + block.forget.bias) if block.forget is not None else None
    if gate is not None:
        out = gate * out
    y = (out @ block.out.weight.T + block.out.bias).transpose(1, 2).reshape(b, c, *spatial)
    gate_map = (gate if gate is not None else torch.ones_like(out)).mean(-1).reshape(b, 1, *spatial)
    return x + y, gate_map


@pytest.mark.parametrize(
    "dims, size, gated, position",
    [(3, (3, 4, 5), True, "conv"), (3, (2, 3, 1), False, "none"), (2, (5, 7), True, "none"), (2, (4, 4), True, "conv")],
)
def test_block_equals_the_explicit_formula(dims, size, gated, position) -> None:
    torch.manual_seed(0)
    block = GatedSelfAttention(dims, 8, heads=2, gated=gated, position=position).double()
    with torch.no_grad():
        block.norm.weight.normal_()
        block.norm.bias.normal_()
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    y, gate = block(x)
    y_ref, gate_ref = explicit(block, x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(gate, gate_ref)
    assert gate.shape == (2, 1, *size)
    assert float(gate.detach().min()) >= 0 and float(gate.detach().max()) <= 1
    if not gated:
        assert torch.all(gate == 1)


def test_gate_closed_leaves_only_the_residual() -> None:
    block = GatedSelfAttention(3, 8, heads=2, position="none")
    with torch.no_grad():
        block.forget.bias.fill_(-1e4)
        block.out.bias.zero_()
    x = torch.randn(1, 8, 2, 3, 4)
    y, gate = block(x)
    torch.testing.assert_close(y, x)
    assert float(gate.max()) < 1e-6


@pytest.mark.parametrize("variant", ["gated", "plain"])
def test_unet_with_bottleneck_block_exposes_its_gate(variant: str) -> None:
    net = AttentionUNet(channels=(4, 8, 16), bottleneck_attention=variant).eval()
    with torch.no_grad():
        out = net.forward_detailed(torch.randn(1, 1, 19, 17, 9))
        maps = net.attention_maps(torch.randn(1, 1, 19, 17, 9))
    assert net.attention_names == ["level1", "bottleneck"]
    assert out.logits.shape == (1, 2, 19, 17, 9)
    assert out.attention["bottleneck"].shape == (1, 1, 5, 5, 3)  # padded 20x20x12 / 4
    assert maps["bottleneck"].shape == (1, 1, 19, 17, 9)
    with pytest.raises(ValueError):
        AttentionUNet(channels=(4, 8, 16), bottleneck_attention="bogus")
