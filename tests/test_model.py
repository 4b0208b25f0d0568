"""AttentionUNet: shapes, odd sizes, attention maps, the matched baseline, deep supervision."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnunet.errors import AttnUNetError
from attnunet.models.attention_unet import AttentionUNet, count_parameters
from attnunet.models.factory import build_model
from attnunet.models.layers import norm_nd
from tests.helpers import compose_train

SMALL = (4, 8, 16, 32)


@pytest.mark.parametrize("dims, size", [(3, (97, 81, 45)), (3, (17, 16, 9)), (2, (97, 81)), (2, (33, 50))])
def test_any_input_size_gives_logits_on_the_input_grid(dims: int, size: tuple[int, ...]) -> None:
    net = AttentionUNet(spatial_dims=dims, num_classes=3, channels=SMALL).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, *size))
    assert out.shape == (2, 3, *size)


def test_attention_maps_cover_gated_levels_on_the_input_grid() -> None:
    net = AttentionUNet(channels=SMALL).eval()
    x = torch.randn(1, 1, 37, 30, 21)
    with torch.no_grad():
        maps = net.attention_maps(x)
        detailed = net.forward_detailed(x)
    assert sorted(maps) == ["level1", "level2"]  # all but the finest of three skip levels
    for name, alpha in maps.items():
        assert alpha.shape == (1, 1, 37, 30, 21)
        assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1
        level = int(name.removeprefix("level"))
        assert detailed.attention[name].shape[2:] == tuple(-(-n // 8) * 8 // 2**level for n in (37, 30, 21))


def test_attention_false_is_the_same_net_without_gates() -> None:
    gated, plain = AttentionUNet(channels=SMALL), AttentionUNet(channels=SMALL, attention=False)
    assert len(plain.gates) == 0 and plain.forward_detailed(torch.randn(1, 1, 16, 16, 16)).attention == {}
    gate_params = sum(p.numel() for p in gated.gates.parameters())
    assert count_parameters(gated) - count_parameters(plain) == gate_params > 0
    plain_names = {n for n, _ in plain.named_parameters()}
    assert plain_names == {n for n, _ in gated.named_parameters() if not n.startswith("gates.")}


def test_paper_widths_parameter_count() -> None:
    """Oktay et al. report 6.40 M (attention) and 5.88 M (plain); ours differ by the upsampling
    (transposed conv instead of trilinear + wider conv), see docs/explanation/model.md."""
    gated = count_parameters(AttentionUNet())
    plain = count_parameters(AttentionUNet(attention=False))
    assert 5.5e6 < plain < gated < 6.5e6


def test_selected_attention_levels() -> None:
    net = AttentionUNet(channels=SMALL, attention_levels=[0, 2])
    assert sorted(net.gates) == ["level0", "level2"]
    with pytest.raises(ValueError):
        AttentionUNet(channels=SMALL, attention_levels=[5])


def test_deep_supervision_outputs_in_training_only() -> None:
    net = AttentionUNet(channels=SMALL, deep_supervision=True)
    out = net.train().forward_detailed(torch.randn(2, 1, 32, 32, 16))
    assert [tuple(a.shape) for a in out.aux_logits] == [(2, 2, 16, 16, 8), (2, 2, 8, 8, 4)]
    assert net.eval().forward_detailed(torch.randn(1, 1, 32, 32, 16)).aux_logits == []


def test_anisotropic_strides() -> None:
    net = AttentionUNet(channels=(4, 8, 16), strides=[(2, 2, 1), 2]).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 20, 20, 7))
    assert net.total_stride == (4, 4, 2) and out.shape == (1, 2, 20, 20, 7)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_gradients_reach_every_parameter(norm: str) -> None:
    net = AttentionUNet(channels=SMALL, norm=norm, dropout=0.1, deep_supervision=True)
    out = net.forward_detailed(torch.randn(2, 1, 16, 16, 16))
    (out.logits.sum() + sum(a.sum() for a in out.aux_logits)).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_bf16_and_channels_last_agree_with_fp32() -> None:
    torch.manual_seed(0)
    net = AttentionUNet(channels=SMALL).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = net(x)
        cl = net.to(memory_format=torch.channels_last_3d)(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
    agreement = (fast.float().argmax(1) == ref.argmax(1)).float().mean()
    assert agreement > 0.95


def test_factory_builds_only_known_models() -> None:
    net = build_model({"name": "attention_unet", "channels": [4, 8], "num_classes": 3})
    assert net.head.out_channels == 3
    with pytest.raises(AttnUNetError, match="unknown model"):
        build_model({"name": "os.system"})
    with pytest.raises(AttnUNetError, match="bad model settings"):
        build_model({"name": "attention_unet", "no_such_argument": 1})


def test_instance_norm_is_computed_as_group_norm_with_identical_results_and_keys() -> None:
    norm = norm_nd("instance", 3, 8)
    reference = nn.InstanceNorm3d(8, affine=True)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    norm.load_state_dict(reference.state_dict())  # checkpoints from InstanceNorm3d load unchanged
    x = torch.randn(2, 8, 6, 5, 4) * 3 + 1
    assert torch.allclose(norm(x), reference(x), atol=1e-5)
    assert torch.allclose(norm(x.contiguous(memory_format=torch.channels_last_3d)), reference(x), atol=1e-5)


def test_leaky_activation_passes_gradient_where_relu_has_died() -> None:
    """The dead-output-level failure: when every pre-activation of a block is negative, ReLU passes no
    gradient back (the level can never recover), the configs' leaky ReLU does."""
    grads = {}
    for kind in ("relu", "leaky_relu"):
        net = AttentionUNet(channels=SMALL, activation=kind)
        last = net.decoder[0]
        with torch.no_grad():  # push the finest decoder block's outputs below zero everywhere
            last[-2].bias.fill_(-100.0)
        x = torch.randn(1, 1, 16, 16, 16)
        net(x).sum().backward()
        grads[kind] = last[-2].weight.grad.abs().sum().item()
    assert grads["relu"] == 0.0
    assert grads["leaky_relu"] > 0.0


def test_configs_default_to_leaky_relu_and_old_checkpoint_configs_to_relu() -> None:
    cfg = compose_train([])
    assert cfg.model.activation == "leaky_relu"
    old = build_model({"name": "attention_unet", "channels": list(SMALL)})  # a config stored before the key existed
    assert any(isinstance(m, nn.ReLU) for m in old.modules())
    assert not any(isinstance(m, nn.LeakyReLU) for m in old.modules())
    with pytest.raises(ValueError, match="activation must be one of"):
        build_model({"name": "attention_unet", "activation": "gelu"})
