"""Sliding-window prediction: windows of one uniform value are computed once and reused, exactly."""

from __future__ import annotations

import torch
from monai.inferers import SlidingWindowInferer

from attnunet.inference.sliding_window import (
    SkipUniformWindows,
    SlidingWindowSpec,
    predict_logits,
    predict_with_attention,
)
from attnunet.models.attention_unet import AttentionUNet

SPEC = SlidingWindowSpec(roi_size=(16, 16, 16), overlap=0.25, sw_batch_size=3)


def mostly_air(shape=(1, 1, 56, 48, 40)) -> torch.Tensor:
    """Zeros (air after the HU window) with one textured block in a corner."""
    volume = torch.zeros(shape)
    volume[..., 4:20, 6:22, 3:17] = torch.rand(1, 1, 16, 16, 14, generator=torch.Generator().manual_seed(0))
    return volume


class CountingNet(torch.nn.Module):
    """Wraps a network and counts the windows it is given."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.windows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows += x.shape[0]
        return self.net(x)


def small_net() -> AttentionUNet:
    torch.manual_seed(0)
    return AttentionUNet(channels=(4, 8, 16), num_classes=3).eval()


def test_skipping_uniform_windows_gives_the_networks_own_output() -> None:
    volume = mostly_air()
    counting = CountingNet(small_net())
    plain = SlidingWindowInferer(SPEC.roi_size, SPEC.sw_batch_size, SPEC.overlap, mode=SPEC.mode)
    with torch.no_grad():
        reference = plain(volume, counting)
        all_windows = counting.windows
        counting.windows = 0
        skipping = SkipUniformWindows(counting)
        fast = plain(volume, skipping)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    assert skipping.windows_reused > 0
    assert counting.windows == skipping.windows_run == all_windows - skipping.windows_reused
    assert len(skipping.cache) == 1  # one uniform value: one network run for all air windows


def test_uniform_windows_of_different_values_are_not_mixed_up() -> None:
    net = small_net()
    windows = torch.cat([torch.full((1, 1, 16, 16, 16), v) for v in (0.0, 1.0, 0.0, 0.5)])
    windows[3, 0, 0, 0, 0] = 0.0  # not uniform
    skipping = SkipUniformWindows(net)
    with torch.no_grad():
        torch.testing.assert_close(skipping(windows), net(windows), rtol=1e-5, atol=1e-5)
    assert skipping.windows_run == 3 and skipping.windows_reused == 1


def test_tuple_outputs_and_product_entry_points_skip_air() -> None:
    net = small_net()
    volume = mostly_air()
    with torch.no_grad():
        logits = predict_logits(net, volume, SPEC)
        logits_again, maps = predict_with_attention(net, volume, SPEC)
        plain = SlidingWindowInferer(SPEC.roi_size, SPEC.sw_batch_size, SPEC.overlap, mode=SPEC.mode)
        reference = plain(volume, net)
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits_again, reference, rtol=1e-5, atol=1e-5)
    assert set(maps) == set(net.attention_names) and all(m.shape[2:] == volume.shape[2:] for m in maps.values())
