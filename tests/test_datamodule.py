"""Splits (fraction, k-fold, splits.json) and the training batches the datamodule yields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attnunet.data.datalist import kfold_splits, load_cases, split_cases
from attnunet.data.datamodule import SegmentationDataModule
from attnunet.errors import AttnUNetError


def test_kfold_parts_cover_every_case_once(tiny_dataset: Path) -> None:
    cases = load_cases(tiny_dataset / "dataset.json")
    folds = kfold_splits(cases, folds=2, seed=0)
    ids = {c["case_id"] for c in cases}
    assert sorted(i for f in folds for i in f["val"]) == sorted(ids)
    for f in folds:
        assert set(f["train"]) | set(f["val"]) == ids and not set(f["train"]) & set(f["val"])
    assert folds == kfold_splits(cases, folds=2, seed=0)
    with pytest.raises(AttnUNetError):
        kfold_splits(cases, folds=9, seed=0)


def test_fraction_split_is_deterministic_and_disjoint(tiny_dataset: Path) -> None:
    cases = load_cases(tiny_dataset / "dataset.json")
    train, val = split_cases(cases, 0.25, seed=3)
    assert (train, val) == split_cases(cases, 0.25, seed=3)
    assert len(val) == 1 and len(train) == 3


def test_splits_file_is_written_then_reused(tiny_dataset: Path, tmp_path: Path) -> None:
    splits = tmp_path / "splits.json"
    dm = SegmentationDataModule(root=str(tiny_dataset), folds=2, fold=1, splits_file=str(splits))
    train, val = dm.split()
    saved = json.loads(splits.read_text())
    assert [c["case_id"] for c in val] == saved[1]["val"]
    # A later run with other split settings but the same file sees the same cases.
    again = SegmentationDataModule(root=str(tiny_dataset), val_fraction=0.5, fold=1, splits_file=str(splits))
    assert again.split() == (train, val)
    with pytest.raises(AttnUNetError, match="fold 5 does not exist"):
        SegmentationDataModule(root=str(tiny_dataset), fold=5, splits_file=str(splits)).split()


def test_training_batches_are_patches_with_foreground(tiny_dataset: Path) -> None:
    dm = SegmentationDataModule(
        root=str(tiny_dataset),
        preprocessing={"spacing": (4.0, 4.0, 4.0)},
        patch_size=(32, 32, 32),
        samples_per_volume=3,
        positive_fraction=1.0,
        num_workers=0,
        val_fraction=0.25,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 1, 32, 32, 32) and batch["label"].shape == (3, 1, 32, 32, 32)
    assert batch["image"].dtype == torch.float32  # windowed to [0, 1], then intensity-augmented:
    assert float(batch["image"].min()) > -0.5 and float(batch["image"].max()) < 1.5
    assert all(bool((lab > 0).any()) for lab in batch["label"])  # positive_fraction=1: foreground-centred
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[:2] == (1, 1) and val["image"].shape[2:] == val["label"].shape[2:]


@pytest.mark.parametrize(
    "content, problem",
    [
        ('[{"train": ["synth_000", "synth_001"], "val": ["synth_001"]}]', r"1 cases are in both train and val"),
        ('{"train": [], "val": []}', "expected a list of"),
        ('[{"train": ["synth_000"]}]', "expected a list of"),
        ("[not json", "not valid JSON"),
    ],
)
def test_bad_splits_file_is_refused(tiny_dataset: Path, tmp_path: Path, content: str, problem: str) -> None:
    splits = tmp_path / "splits.json"
    splits.write_text(content)
    with pytest.raises(AttnUNetError, match=problem) as info:
        SegmentationDataModule(root=str(tiny_dataset), splits_file=str(splits)).split()
    assert str(splits) in str(info.value)


def test_only_rank_zero_writes_the_splits_file(tiny_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    from attnunet.data import datamodule

    splits = tmp_path / "run" / "splits.json"
    monkeypatch.setattr(datamodule, "_is_rank_zero", lambda: False)
    train, val = SegmentationDataModule(root=str(tiny_dataset), splits_file=str(splits)).split()
    assert not splits.parent.exists() or not list(splits.parent.iterdir())
    monkeypatch.setattr(datamodule, "_is_rank_zero", lambda: True)
    assert SegmentationDataModule(root=str(tiny_dataset), splits_file=str(splits)).split() == (train, val)
    assert [p.name for p in splits.parent.iterdir()] == ["splits.json"]  # no temporary file left
    assert json.loads(splits.read_text())[0]["val"] == [c["case_id"] for c in val]


def test_ddp_validation_share_pads_ranks_with_weightless_repeats() -> None:
    from attnunet.data.datamodule import validation_share

    val = [{"case_id": f"c{i}"} for i in range(3)]
    shares = [validation_share(val, rank, 2) for rank in range(2)]
    assert [[c["case_id"] for c in cases] for cases, _ in shares] == [["c0", "c2"], ["c1", "c0"]]
    assert [w for _, w in shares] == [[1.0, 1.0], [1.0, 0.0]]
    lone = [validation_share(val[:1], rank, 3) for rank in range(3)]
    assert [w for _, w in lone] == [[1.0], [0.0], [0.0]]  # every rank runs one step; one counts
