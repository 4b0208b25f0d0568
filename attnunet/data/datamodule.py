"""LightningDataModule: dataset.json -> cached, preprocessed train/validation loaders."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from monai import transforms as mt
from monai.data import CacheDataset, DataLoader, DistributedSampler, list_data_collate

from attnunet.data import synthetic
from attnunet.data.datalist import (
    Case,
    apply_split,
    kfold_splits,
    label_names,
    load_cases,
    read_dataset_json,
    split_cases,
)
from attnunet.data.transforms import AugmentationSpec, PreprocessingSpec, preprocessing, training_sampling
from attnunet.errors import AttnUNetError

log = logging.getLogger(__name__)


class SegmentationDataModule(pl.LightningDataModule):
    """Train/validation data for one ``dataset.json`` (MSD layout).

    Args:
        root: dataset folder holding ``dataset_json``.
        dataset_json: file name (or absolute path) of the MSD-style case list.
        spacing, orientation, intensity_window, crop_foreground: the preprocessing
            (see :class:`~attnunet.data.transforms.PreprocessingSpec`).
        patch_size: training patch and sliding-window size, voxels.
        batch_size: volumes per step; each gives ``samples_per_volume`` patches, so a batch is
            ``(batch_size * samples_per_volume, 1, *patch_size)``.
        positive_fraction: share of patches centred on foreground.
        val_fraction, split_seed: deterministic train/validation split.
        folds, fold: with ``folds`` set, k-fold cross-validation; ``fold`` picks the validation part.
        splits_file: JSON file of the folds (``[{"train": [ids], "val": [ids]}, ...]``): read when it
            exists (so a resumed or repeated run sees the same split), written otherwise.
        cache: keep preprocessed volumes in memory (``cache_rate`` share of them).
        num_workers: loader worker processes for training.
        augmentation: fields of :class:`~attnunet.data.transforms.AugmentationSpec`.
        synthetic: when given (``num_cases``, ``seed``, ``lesions``) and ``root`` holds no
            dataset yet, the synthetic phantom set is generated there first.
    """

    def __init__(
        self,
        root: str,
        dataset_json: str = "dataset.json",
        spacing: Sequence[float] | None = (2.0, 2.0, 2.0),
        orientation: str = "RAS",
        intensity_window: Sequence[float] = (-175.0, 250.0),
        crop_foreground: bool = True,
        patch_size: Sequence[int] = (64, 64, 64),
        batch_size: int = 1,
        samples_per_volume: int = 2,
        positive_fraction: float = 0.67,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        folds: int | None = None,
        fold: int = 0,
        splits_file: str | None = None,
        cache: bool = True,
        cache_rate: float = 1.0,
        num_workers: int = 1,
        augmentation: dict[str, Any] | None = None,
        synthetic: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.dataset_json = self.root / dataset_json
        self.spec = PreprocessingSpec.from_dict(
            {
                "spacing": spacing,
                "orientation": orientation,
                "intensity_window": intensity_window,
                "crop_foreground": crop_foreground,
            }
        )
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = batch_size
        self.samples_per_volume = samples_per_volume
        self.positive_fraction = positive_fraction
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.folds = folds
        self.fold = fold
        self.splits_file = Path(splits_file) if splits_file else None
        self.cache_rate = cache_rate if cache else 0.0
        self.num_workers = num_workers
        self.augmentation = AugmentationSpec(**(augmentation or {}))
        self.synthetic = synthetic
        self.train_set: CacheDataset | None = None
        self.val_set: CacheDataset | None = None

    def prepare_data(self) -> None:
        """Generate the synthetic set on first use (runs once per node)."""
        if self.synthetic is not None and not self.dataset_json.exists():
            log.info("Generating the synthetic pancreas CT set in %s", self.root)
            synthetic.write_dataset(self.root, **self.synthetic)

    @functools.cached_property
    def labels(self) -> dict[int, str]:
        """Label map of the dataset, ``{0: 'background', 1: 'pancreas', ...}`` (read once, after
        :meth:`prepare_data` has made sure the dataset exists)."""
        return label_names(read_dataset_json(self.dataset_json), self.dataset_json)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self.split()
        log.info("%d training and %d validation cases from %s", len(train), len(val), self.dataset_json)
        base = preprocessing(self.spec, num_labels=len(self.labels))
        sampling = training_sampling(
            self.patch_size, self.samples_per_volume, self.positive_fraction, self.augmentation
        )
        workers = min(self.num_workers, 4)
        self.train_set = CacheDataset(
            train, mt.Compose(base + sampling), cache_rate=self.cache_rate, num_workers=workers
        )
        self.val_set = CacheDataset(val, mt.Compose(base), cache_rate=self.cache_rate, num_workers=workers)

    def split(self) -> tuple[list[Case], list[Case]]:
        """Training and validation cases: from ``splits_file``, k folds, or ``val_fraction``."""
        cases = load_cases(self.dataset_json)
        if self.splits_file is not None and self.splits_file.is_file():
            folds = json.loads(self.splits_file.read_text())
        elif self.folds:
            folds = kfold_splits(cases, self.folds, self.split_seed)
        else:
            train, val = split_cases(cases, self.val_fraction, self.split_seed)
            folds = [{"train": [c["case_id"] for c in train], "val": [c["case_id"] for c in val]}]
        if not 0 <= self.fold < len(folds):
            raise AttnUNetError(f"fold {self.fold} does not exist; there are {len(folds)}", self.splits_file)
        if self.splits_file is not None and not self.splits_file.is_file():
            self.splits_file.parent.mkdir(parents=True, exist_ok=True)
            self.splits_file.write_text(json.dumps(folds, indent=1))
        return apply_split(cases, folds[self.fold], self.splits_file or self.dataset_json)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            collate_fn=list_data_collate,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        sampler = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Each rank scores its own cases, none twice (Lightning's default sampler pads the last
            # ranks with repeated cases, which would bias the aggregated Dice).
            sampler = DistributedSampler(self.val_set, shuffle=False, even_divisible=False)
        return DataLoader(self.val_set, batch_size=1, num_workers=0, sampler=sampler)


class SyntheticDataModule(SegmentationDataModule):
    """The built-in default: the synthetic phantom set, generated into ``root`` on first use.

    Args:
        num_cases: cases to generate.
        synthetic_seed: generator seed (case ``i`` depends only on it and ``i``).
        lesions: add a lesion class (label 2) inside some of the pancreases.
        **kwargs: as :class:`SegmentationDataModule`.
    """

    def __init__(self, num_cases: int = 32, synthetic_seed: int = 0, lesions: bool = False, **kwargs: Any) -> None:
        super().__init__(synthetic={"num_cases": num_cases, "seed": synthetic_seed, "lesions": lesions}, **kwargs)
