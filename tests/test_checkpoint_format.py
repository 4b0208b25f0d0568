"""The checkpoint format: one description written, read and validated in one place; old files load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import attnunet
from attnunet.checkpoint_format import (
    FORMAT,
    KEY,
    CheckpointDescription,
    read_checkpoint,
    write_checkpoint,
)
from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.models.factory import build_model
from attnunet.training.init_weights import load_initial_weights

MODEL = {"name": "attention_unet", "channels": [2, 4], "strides": [2], "num_classes": 2}
# The description exactly as checkpoints of format 1 have been written since the format began.
FORMAT_1 = {
    "format": 1,
    "version": "0.1.0",
    "model": MODEL,
    "labels": {"0": "background", "1": "pancreas"},
    "preprocessing": {"spacing": [4.0, 4.0, 4.0], "intensity_window": [-175, 250]},
    "sliding_window": {"roi_size": [16, 16, 16], "overlap": 0.25, "sw_batch_size": 2, "mode": "gaussian"},
    "split": {"train": ["case_000"], "val": ["case_001"]},
    "postprocessing": {"largest_component": [1], "val_dice": {"1": 0.5}},
    "flip_axes": [0, 1, 2],
}


def save_as_lightning_did(path: Path, description: dict, net: torch.nn.Module) -> Path:
    """A checkpoint laid out as training writes it: the module's state (network under ``net.``,
    plus tensors of its own), Lightning's fields and the description, without this package's writer."""
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    state["loss.class_weight"] = torch.ones(2)  # a module tensor that is not the network's
    torch.save({"epoch": 3, "global_step": 12, "state_dict": state, "hyper_parameters": {}, KEY: description}, path)
    return path


def test_a_format_1_checkpoint_loads_with_its_weights_and_description(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_model(MODEL)
    model = load_checkpoint(save_as_lightning_did(tmp_path / "old.ckpt", FORMAT_1, net))
    assert model.meta == FORMAT_1
    assert model.labels == {0: "background", 1: "pancreas"}
    assert list(model.preprocessing.spacing) == [4.0, 4.0, 4.0] and list(model.sliding_window.roi_size) == [16] * 3
    for name, tensor in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[name], tensor), name


def test_entries_older_checkpoints_lack_read_as_not_recorded(tmp_path: Path) -> None:
    oldest = {k: v for k, v in FORMAT_1.items() if k not in ("version", "split", "postprocessing", "flip_axes")}
    description, weights = read_checkpoint(save_as_lightning_did(tmp_path / "o.ckpt", oldest, build_model(MODEL)))
    assert (description.version, description.split, description.postprocessing, description.flip_axes) == (
        None,
        None,
        {},
        [],
    )
    assert "loss.class_weight" not in weights and set(weights) == set(build_model(MODEL).state_dict())


def test_written_checkpoint_reads_back_and_keeps_the_format_1_layout(tmp_path: Path) -> None:
    description = CheckpointDescription.from_dict(FORMAT_1)
    assert description.to_dict() == FORMAT_1 and list(description.to_dict()) == list(FORMAT_1)
    net = build_model(MODEL)
    path = write_checkpoint(tmp_path / "sub.ckpt", description, net.state_dict())
    read, weights = read_checkpoint(path)
    assert read == description
    assert set(weights) == set(net.state_dict())
    assert torch.load(path, weights_only=True)[KEY] == FORMAT_1
    assert [p.name for p in tmp_path.iterdir()] == ["sub.ckpt"]  # no temporary file left


def test_a_new_description_records_this_format_and_version() -> None:
    fresh = CheckpointDescription(MODEL, {0: "background"}, {}, {})
    assert fresh.format == FORMAT and fresh.version == attnunet.__version__


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": FORMAT + 1}, f"checkpoint format {FORMAT + 1} is newer than this attnunet understands"),
        ({"format": "one"}, "malformed checkpoint format 'one'"),
        ({"labels": None}, "checkpoint description has no 'labels' dictionary"),
        ({"sliding_window": [16, 16, 16]}, "checkpoint description has no 'sliding_window' dictionary"),
        ({"labels": {"background": "0"}}, "malformed checkpoint description"),
    ],
)
def test_a_bad_description_is_refused_naming_the_file(tmp_path: Path, change: dict, message: str) -> None:
    path = save_as_lightning_did(tmp_path / "bad.ckpt", {**FORMAT_1, **change}, build_model(MODEL))
    with pytest.raises(AttnUNetError, match=message) as e:
        load_checkpoint(path)
    assert str(e.value).startswith(str(path))


def test_init_weights_reads_through_the_same_validation(tmp_path: Path) -> None:
    path = save_as_lightning_did(tmp_path / "new.ckpt", {**FORMAT_1, "format": FORMAT + 1}, build_model(MODEL))
    with pytest.raises(AttnUNetError, match=f"init_weights: checkpoint format {FORMAT + 1} is newer"):
        load_initial_weights(build_model(MODEL), path, MODEL)
