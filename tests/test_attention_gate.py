"""The gate against the formula of Oktay et al. (2018), computed independently in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnunet.models.attention_gate import AttentionGate


def linear_upsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of linear interpolation with half-pixel centres (align_corners=False)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = min(int(np.floor(src)), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        w = src - lo
        m[i, lo] += 1 - w
        m[i, hi] += w
    return m


def reference_gate(x, g, w_theta, w_phi, b_phi, w_psi, b_psi, w_out, b_out, stride=2, eps=1e-5):
    """x: (C_x, *S), g: (C_g, *S/2). Weights as NumPy arrays; returns (output, alpha on x grid)."""
    dims = x.ndim - 1
    c_x = x.shape[0]
    coarse = tuple(n // stride for n in x.shape[1:])
    # theta: a kernel = stride convolution without bias is a weighted sum over each block of x
    split = x.reshape(c_x, *sum(((n, stride) for n in coarse), ()))  # (C, n0, k0, n1, k1, ...)
    kernel_axes = [2 + 2 * a for a in range(dims)]
    coarse_axes = [1 + 2 * a for a in range(dims)]
    blocks = split.transpose(0, *kernel_axes, *coarse_axes)  # (C, k0, k1, .., n0, n1, ..)
    theta = np.tensordot(w_theta, blocks, axes=(list(range(1, 2 + dims)), list(range(0, 1 + dims))))
    phi = np.tensordot(w_phi, g, axes=([1], [0])) + b_phi.reshape(-1, *([1] * dims))
    q = np.maximum(theta + phi, 0)
    alpha_coarse = 1 / (1 + np.exp(-(np.tensordot(w_psi, q, axes=([1], [0])) + b_psi.reshape(-1, *([1] * dims)))))
    alpha = alpha_coarse[0]
    for axis, (n_in, n_out) in enumerate(zip(coarse, x.shape[1:])):
        alpha = np.moveaxis(np.tensordot(linear_upsample_matrix(n_in, n_out), alpha, axes=([1], [axis])), 0, axis)
    y = alpha[None] * x
    z = np.tensordot(w_out, y, axes=([1], [0])) + b_out.reshape(-1, *([1] * dims))
    axes = tuple(range(1, dims + 1))
    out = (z - z.mean(axes, keepdims=True)) / np.sqrt(z.var(axes, keepdims=True) + eps)
    return out, alpha


@pytest.mark.parametrize("dims, size", [(3, (8, 6, 4)), (2, (10, 6))])
def test_gate_matches_the_paper_formula(dims: int, size: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    c_x, c_g, c_int = 3, 5, 2
    gate = AttentionGate(dims, c_x, c_g, inter_channels=c_int, stride=2, norm="instance").double()
    weights = {
        "theta.weight": rng.normal(size=(c_int, c_x, *([2] * dims))),
        "phi.weight": rng.normal(size=(c_int, c_g, *([1] * dims))),
        "phi.bias": rng.normal(size=c_int),
        "psi.weight": rng.normal(size=(1, c_int, *([1] * dims))),
        "psi.bias": rng.normal(size=1),
        "output.0.weight": rng.normal(size=(c_x, c_x, *([1] * dims))),
        "output.0.bias": rng.normal(size=c_x),
    }
    state = gate.state_dict()
    for name, value in weights.items():
        state[name] = torch.from_numpy(value)
    gate.load_state_dict(state)
    x = rng.normal(size=(c_x, *size))
    g = rng.normal(size=(c_g, *(n // 2 for n in size)))

    out, alpha = gate(torch.from_numpy(x)[None], torch.from_numpy(g)[None])
    ref_out, ref_alpha = reference_gate(
        x,
        g,
        weights["theta.weight"],
        weights["phi.weight"].reshape(c_int, c_g),
        weights["phi.bias"],
        weights["psi.weight"].reshape(1, c_int),
        weights["psi.bias"],
        weights["output.0.weight"].reshape(c_x, c_x),
        weights["output.0.bias"],
    )
    assert alpha.shape == (1, 1, *size)
    np.testing.assert_allclose(alpha[0, 0].detach().numpy(), ref_alpha, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out[0].detach().numpy(), ref_out, rtol=1e-5, atol=1e-7)


def test_gate_alpha_is_a_probability_and_scales_x() -> None:
    gate = AttentionGate(3, 4, 8).eval()
    x = torch.randn(2, 4, 8, 8, 8)
    _, alpha = gate(x, torch.randn(2, 8, 4, 4, 4))
    assert alpha.min() >= 0 and alpha.max() <= 1
    # With alpha forced to zero the gated skip carries no information about x.
    with torch.no_grad():
        gate.psi.bias.fill_(-1e4)
    out_a, alpha0 = gate(x, torch.randn(2, 8, 4, 4, 4))
    out_b, _ = gate(torch.randn(2, 4, 8, 8, 8), torch.randn(2, 8, 4, 4, 4))
    assert float(alpha0.detach().max()) < 1e-6
    torch.testing.assert_close(out_a, out_b)


def test_gating_signal_of_another_size_is_resampled() -> None:
    gate = AttentionGate(3, 4, 6)
    out, alpha = gate(torch.randn(1, 4, 8, 8, 8), torch.randn(1, 6, 3, 5, 4))
    assert out.shape == (1, 4, 8, 8, 8) and alpha.shape == (1, 1, 8, 8, 8)
