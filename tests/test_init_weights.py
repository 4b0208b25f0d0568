"""Fine-tuning from another run's weights (``init_weights=``) and the frozen encoder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from attnunet.errors import AttnUNetError
from attnunet.models.factory import build_model
from attnunet.training.init_weights import FreezeEncoder, encoder_modules, load_initial_weights
from attnunet.training.module import SegmentationModule

MODEL = {"name": "attention_unet", "channels": [4, 8, 16]}


def saved_module(path: Path, labels: dict[int, str], model: dict = MODEL, seed: int = 0) -> SegmentationModule:
    torch.manual_seed(seed)
    module = SegmentationModule(
        model=dict(model),
        labels=labels,
        preprocessing={"spacing": [4.0, 4.0, 4.0]},
        sliding_window={"roi_size": [32, 32, 32]},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True},
    )
    torch.save({"state_dict": module.state_dict(), "attnunet": module.describe()}, path)
    return module


def test_every_tensor_is_copied_when_the_networks_match(tmp_path: Path) -> None:
    source = saved_module(tmp_path / "a.ckpt", {0: "background", 1: "pancreas"})
    torch.manual_seed(1)
    net = build_model({**MODEL, "num_classes": 2})
    report = load_initial_weights(net, tmp_path / "a.ckpt", MODEL)
    n = len(net.state_dict())
    assert report.startswith(f"init_weights: loaded {n} of {n} tensors from ")
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, source.net.state_dict()[key])


def test_heads_of_another_label_map_start_afresh_and_are_named(tmp_path: Path) -> None:
    source = saved_module(tmp_path / "a.ckpt", {0: "background", 1: "pancreas"})
    torch.manual_seed(1)
    net = build_model({**MODEL, "num_classes": 4})
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    report = load_initial_weights(net, tmp_path / "a.ckpt", MODEL)
    assert report.endswith("; initialised afresh: head; 2 tensors of the checkpoint unused")
    torch.testing.assert_close(net.head.weight, fresh["head.weight"])
    torch.testing.assert_close(net.encoder[0][0].weight, source.net.encoder[0][0].weight)
    assert not torch.equal(net.encoder[0][0].weight, fresh["encoder.0.0.weight"])


def test_another_architecture_is_refused_with_what_differs(tmp_path: Path) -> None:
    saved_module(tmp_path / "a.ckpt", {0: "background", 1: "pancreas"})
    wider = {**MODEL, "channels": [8, 16, 32]}
    with pytest.raises(AttnUNetError, match=r"another architecture: channels=\[4, 8, 16\] \(this run: \[8, 16, 32\]\)"):
        load_initial_weights(build_model({**wider, "num_classes": 2}), tmp_path / "a.ckpt", wider)
    plain = {**MODEL, "attention": False}
    with pytest.raises(AttnUNetError, match="attention=True"):
        load_initial_weights(build_model({**plain, "num_classes": 2}), tmp_path / "a.ckpt", plain)


def test_a_file_that_is_not_an_attnunet_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(AttnUNetError, match="not an attnunet checkpoint") as e:
        load_initial_weights(build_model({**MODEL, "num_classes": 2}), tmp_path / "other.ckpt", MODEL)
    assert "other.ckpt" in str(e.value)
    with pytest.raises(AttnUNetError, match="checkpoint not found"):
        load_initial_weights(build_model({**MODEL, "num_classes": 2}), tmp_path / "missing.ckpt", MODEL)


def test_a_frozen_encoder_does_not_move_while_the_decoder_trains() -> None:
    torch.manual_seed(0)
    net = build_model({**MODEL, "num_classes": 2})
    module = SimpleNamespace(net=net)
    freeze = FreezeEncoder(epochs=2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.01, weight_decay=0.01)
    encoder_before = [p.clone() for m in encoder_modules(net) for p in m.parameters()]
    decoder_before = [p.clone() for p in net.decoder.parameters()]
    for epoch in range(3):
        freeze.on_train_epoch_start(SimpleNamespace(current_epoch=epoch), module)
        optimizer.zero_grad(set_to_none=True)
        net(torch.randn(1, 1, 16, 16, 16)).mean().backward()
        optimizer.step()
        encoder_now = [p for m in encoder_modules(net) for p in m.parameters()]
        unchanged = all(torch.equal(a, b) for a, b in zip(encoder_before, encoder_now, strict=True))
        assert unchanged == (epoch < 2), epoch  # frozen for epochs 0 and 1, trained from epoch 2
    assert not all(torch.equal(a, b) for a, b in zip(decoder_before, net.decoder.parameters(), strict=True))
    with pytest.raises(ValueError, match="at least 1"):
        FreezeEncoder(0)
