"""Largest-component post-processing: the transform, the choice made on validation, and how
inference resolves ``largest_component=auto`` from what the checkpoint stores."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.transforms import KeepLargestConnectedComponent

from attnunet.inference import postprocessing
from attnunet.inference.postprocessing import keep_largest_component, labels_that_gain, resolve_largest_component
from attnunet.training import module as module_code
from attnunet.training.module import SegmentationModule

SHAPE = (24, 24, 24)


def blobs(*boxes: tuple[slice, slice, slice], value: int = 1) -> torch.Tensor:
    """``(1, *SHAPE)`` int64 label map with ``value`` in each box."""
    labels = torch.zeros(1, *SHAPE, dtype=torch.long)
    for box in boxes:
        labels[(0, *box)] = value
    return labels


ORGAN = (slice(4, 12), slice(4, 12), slice(4, 12))  # 512 voxels
ISLAND = (slice(18, 21), slice(18, 21), slice(18, 21))  # 27 voxels, far from the organ
SECOND_HALF = (slice(14, 22), slice(4, 12), slice(4, 12))  # as big as ORGAN, apart from it


def test_only_the_largest_piece_of_an_applied_label_is_kept() -> None:
    labels = blobs(ORGAN, ISLAND)
    labels[(0, *SECOND_HALF)] = 2  # another label, two pieces after the next line
    labels[0, 0, 0, 0] = 2
    before = labels.clone()
    kept = keep_largest_component(labels, [1])
    assert torch.equal(labels, before)  # the input is not edited
    assert torch.equal(kept[(0, *ORGAN)], torch.ones(8, 8, 8, dtype=torch.long))
    assert not kept[(0, *ISLAND)].any()
    assert int((kept == 2).sum()) == int((labels == 2).sum())  # label 2 not applied: untouched
    assert torch.equal(keep_largest_component(labels, []), labels)


def test_same_pieces_as_monais_transform_over_the_whole_volume() -> None:
    # Pieces of distinct sizes (no ties), two of them touching only at a corner (one piece with
    # 26-connectivity), spread so that the bounding boxes differ per label.
    labels = torch.zeros(1, 40, 36, 30, dtype=torch.long)
    for value, corner, size in [
        (1, (1, 1, 1), 4),
        (1, (5, 5, 5), 4),
        (1, (20, 20, 20), 5),
        (1, (33, 3, 24), 2),
        (2, (10, 25, 3), 6),
        (2, (30, 30, 10), 3),
        (2, (2, 30, 25), 4),
    ]:
        x, y, z = corner
        labels[0, x : x + size, y : y + size, z : z + size] = value
    mine = keep_largest_component(labels, [1, 2])
    monai = KeepLargestConnectedComponent(applied_labels=[1, 2], independent=True)(labels.clone())
    assert torch.equal(mine, torch.as_tensor(monai))
    assert int((mine == 1).sum()) == 64 + 64  # the corner-touching pair beats the 125-voxel cube
    assert int((mine == 2).sum()) == 216


def test_a_label_is_chosen_only_when_its_validation_dice_rises() -> None:
    assert labels_that_gain({1: 0.60, 2: 0.40}, {1: 0.70, 2: 0.35}) == [1]
    assert labels_that_gain({1: 0.60}, {1: 0.60}) == []  # equal is no reason to delete voxels
    assert labels_that_gain({1: 0.60, 2: 0.4}, {1: 0.61}) == [1]  # label 2 had no reference


def test_auto_takes_the_stored_choice_and_an_ensembles_majority() -> None:
    chose = {"postprocessing": {"largest_component": [1]}}
    chose_both = {"postprocessing": {"largest_component": [1, 2]}}
    older = {"labels": {"0": "background", "1": "pancreas"}}  # a checkpoint from before the choice
    assert resolve_largest_component("auto", [chose], [1, 2]) == [1]
    assert resolve_largest_component("auto", [older], [1, 2]) == []
    assert resolve_largest_component("auto", [chose, chose_both, older], [1, 2]) == [1]
    assert resolve_largest_component(True, [older], [1, 2]) == [1, 2]
    assert resolve_largest_component(False, [chose], [1, 2]) == []
    with pytest.raises(ValueError, match="largest_component must be auto, true or false"):
        resolve_largest_component("yes", [chose], [1])


def small_module() -> SegmentationModule:
    return SegmentationModule(
        model={"name": "attention_unet", "channels": [2, 4, 8], "deep_supervision": False},
        labels={0: "background", 1: "pancreas"},
        preprocessing={},
        sliding_window={"roi_size": list(SHAPE)},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
    )


def validate(monkeypatch: pytest.MonkeyPatch, cases: list[tuple[torch.Tensor, torch.Tensor]]) -> SegmentationModule:
    """One validation epoch over ``(prediction, reference)`` label maps ``(1, *SHAPE)``: the network's
    logits are replaced by ones that predict exactly ``prediction`` (handed over as the image)."""

    def logits_of(net, image, window):  # noqa: ANN001, ANN202 - stands in for predict_logits
        return (F.one_hot(image[:, 0].long(), 2).movedim(-1, 1).float() - 0.5) * 20

    monkeypatch.setattr(module_code, "predict_logits", logits_of)
    module = small_module()
    for i, (pred, ref) in enumerate(cases):
        module.validation_step({"image": pred[None].float(), "label": ref[None].float()}, i)
    module.on_validation_epoch_end()
    return module


def test_validation_chooses_the_largest_component_when_islands_are_false_positives(monkeypatch) -> None:
    cases = [(blobs(ORGAN, ISLAND), blobs(ORGAN)), (blobs(ORGAN), blobs(ORGAN))]
    module = validate(monkeypatch, cases)
    stored = module.describe()["postprocessing"]
    assert stored[postprocessing.STORED_KEY] == [1]
    assert stored["val_dice_largest_component"]["1"] == pytest.approx(1.0)
    assert stored["val_dice"]["1"] == pytest.approx((2 * 512 / (512 + 539) + 1) / 2)


def test_validation_keeps_every_piece_when_the_organ_has_several(monkeypatch) -> None:
    # The reference itself is two pieces: keeping one halves the Dice, so nothing is chosen.
    two_pieces = blobs(ORGAN, SECOND_HALF)
    module = validate(monkeypatch, [(two_pieces, two_pieces)])
    stored = module.describe()["postprocessing"]
    assert stored[postprocessing.STORED_KEY] == []
    assert stored["val_dice"]["1"] == pytest.approx(1.0)
    assert stored["val_dice_largest_component"]["1"] == pytest.approx(2 / 3)


def test_a_resumed_module_keeps_the_stored_choice_until_it_validates_again() -> None:
    module = small_module()
    module.on_load_checkpoint({"attnunet": {"postprocessing": {"largest_component": [1]}}})
    assert module.describe()["postprocessing"] == {"largest_component": [1]}
