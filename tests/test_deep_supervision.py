"""Deep-supervision targets lie on the grid of the auxiliary logits, also for patches that the
network pads (sizes not a multiple of its total stride); sizes that cannot work are refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnunet.errors import AttnUNetError
from attnunet.models.attention_unet import AttentionUNet, NetOutput
from attnunet.training.module import SegmentationModule, deep_supervision_targets

CHANNELS = (2, 4, 8, 8)  # three downsamplings: total stride 8, deep-supervision heads at strides 2 and 4
PATCH = (36, 36, 36)  # padded to 40 by the network
BLOCK = slice(8, 16)  # one foreground cube, aligned with every level's grid


def make_module() -> SegmentationModule:
    return SegmentationModule(
        model={"name": "attention_unet", "channels": list(CHANNELS), "deep_supervision": True},
        labels={0: "background", 1: "pancreas"},
        preprocessing={},
        sliding_window={"roi_size": list(PATCH)},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
    )


def block_label() -> torch.Tensor:
    """``(1, 1, 36, 36, 36)`` float label: background with one foreground cube."""
    label = torch.zeros(1, 1, *PATCH)
    label[..., BLOCK, BLOCK, BLOCK] = 1
    return label


def confident_logits(label: torch.Tensor) -> torch.Tensor:
    """``(B, 1, *S)`` label -> ``(B, 2, *S)`` logits that predict exactly that label."""
    return (F.one_hot(label[:, 0].long(), 2).movedim(-1, 1).float() - 0.5) * 40


def test_auxiliary_logits_live_on_the_padded_grid() -> None:
    module = make_module().train()
    out = module.net.forward_detailed(torch.zeros(1, 1, *PATCH))
    assert module.net.padded_size(PATCH) == (40, 40, 40)
    assert [tuple(a.shape[2:]) for a in out.aux_logits] == [(20, 20, 20), (10, 10, 10)]


def test_targets_are_the_label_padded_then_sampled_inside_each_logit_voxels_block() -> None:
    torch.manual_seed(0)
    label = torch.randint(0, 3, (2, 1, 36, 30, 13)).float()
    padded = (40, 32, 16)
    explicit = torch.zeros(2, 1, *padded)
    explicit[..., :36, :30, :13] = label
    targets = deep_supervision_targets(label, padded, [(20, 16, 8), (10, 8, 4)])
    for target, f in zip(targets, (2, 4), strict=True):
        assert torch.equal(target, explicit[..., f // 2 :: f, f // 2 :: f, f // 2 :: f])


def test_foreground_lands_on_the_auxiliary_voxels_that_cover_it() -> None:
    level1, level2 = deep_supervision_targets(block_label(), (40, 40, 40), [(20, 20, 20), (10, 10, 10)])
    for target, f in ((level1, 2), (level2, 4)):
        expected = torch.zeros_like(target)
        expected[..., 8 // f : 16 // f, 8 // f : 16 // f, 8 // f : 16 // f] = 1
        assert torch.equal(target, expected)


def test_loss_is_minimal_for_logits_that_match_the_label_on_every_level() -> None:
    """Aux logits that predict the cube on the voxels covering it (the padded grid, coarsened) give
    a near-zero loss; a target stretched over the padding would disagree with them at the cube's rim."""
    module = make_module()
    label = block_label()
    aux = []
    for f in (2, 4):
        coarse = torch.zeros(1, 1, 40 // f, 40 // f, 40 // f)
        coarse[..., 8 // f : 16 // f, 8 // f : 16 // f, 8 // f : 16 // f] = 1
        aux.append(confident_logits(coarse))
    out = NetOutput(logits=confident_logits(label), aux_logits=aux)
    assert float(module.supervised_loss(out, label)) < 1e-3


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_training_step_runs_on_a_patch_that_is_not_a_multiple_of_the_stride() -> None:
    module = make_module().train()
    batch = {"image": torch.randn(2, 1, *PATCH), "label": block_label().expand(2, -1, -1, -1, -1)}
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss) and loss.requires_grad


@pytest.mark.parametrize("norm, batch, training", [("instance", 1, False), ("instance", 2, True), ("batch", 1, True)])
def test_a_single_bottleneck_voxel_is_refused_with_a_clear_error(norm: str, batch: int, training: bool) -> None:
    net = AttentionUNet(channels=CHANNELS, norm=norm).train(training)
    message = r"input size 5x8x3 leaves one voxel at the bottleneck \(total stride 8x8x8\)"
    with pytest.raises(AttnUNetError, match=message):
        net(torch.zeros(batch, 1, 5, 8, 3))


@pytest.mark.parametrize("norm, batch, training", [("instance", 1, True), ("batch", 2, True), ("batch", 1, False)])
def test_sizes_that_leave_more_than_one_value_to_normalise_are_accepted(norm: str, batch: int, training: bool) -> None:
    net = AttentionUNet(channels=CHANNELS, norm=norm).train(training)
    size = (8, 8, 9) if norm == "instance" else (8, 8, 8)  # instance: padded to 8x8x16, two bottleneck voxels
    assert net(torch.zeros(batch, 1, *size)).shape == (batch, 2, *size)
