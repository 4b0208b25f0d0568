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
from monai.data import DataLoader, Dataset, list_data_collate, partition_dataset
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import DistributedSampler

from attnunet import phantom
from attnunet.data.cache import cache_key, cached_dataset
from attnunet.data.datalist import Case, apply_split, kfold_splits, read_splits, split_cases
from attnunet.data.labels import merge_labels
from attnunet.data.layouts import CaseList, discover
from attnunet.data.transforms import (
    LABEL,
    VAL_WEIGHT,
    AugmentationSpec,
    PreprocessingSpec,
    patch_dims,
    preprocessing,
    training_sampling,
)
from attnunet.errors import AttnUNetError
from attnunet.phantom.randomize import TISSUE, AppearanceSpec, patch_randomization
from attnunet.utils.atomic import write_text_atomically

log = logging.getLogger(__name__)


class SegmentationDataModule(pl.LightningDataModule):
    """Train/validation data for a labelled CT dataset in any supported layout.

    Args:
        root: dataset folder.
        layout: ``auto``, ``msd``, ``nnunet``, ``folder`` or ``nih`` (see
            :func:`attnunet.data.layouts.discover`); ``dataset_json``, ``image_dir``,
            ``label_dir`` and ``label_names`` locate the files as that layout needs.
        max_cases: use only the first ``max_cases`` cases of the list (quick checks); ``None``: all.
        merge_labels: ``{source: target}`` label values counted as another, e.g. ``{2: 1}`` trains
            MSD's pancreas + tumour as one pancreas class; the label map shrinks accordingly.
        preprocessing: fields of :class:`~attnunet.data.transforms.PreprocessingSpec` (orientation,
            spacing, intensity window, normalization, body crop); missing ones take its defaults.
        patch_size: training patch and sliding-window size, voxels.
        batch_size: volumes per step; each gives ``samples_per_volume`` patches, so a batch is
            ``(batch_size * samples_per_volume, 1, *patch_size)``.
        positive_fraction: share of patches centred on foreground.
        positive_labels: label values (after ``merge_labels``) those patches centre on; ``None``:
            every foreground label.
        val_fraction, split_seed: deterministic train/validation split.
        folds, fold: with ``folds`` set, k-fold cross-validation; ``fold`` picks the validation part.
        splits_file: JSON file of the folds (``[{"train": [ids], "val": [ids]}, ...]``): read when it
            exists (so a resumed or repeated run sees the same split), written otherwise.
        cache: ``memory`` (``cache_rate`` share of the volumes), ``disk`` (persistent, in a folder
            of ``cache_dir`` keyed by the preprocessing settings) or ``none``. Under DDP each rank
            caches only its own share of the cases.
        num_workers: loader worker processes for training.
        augmentation: fields of :class:`~attnunet.data.transforms.AugmentationSpec`.
        synthetic: when given (``num_cases``, ``seed``, ``lesions``, ``organs``) and ``root`` holds no
            dataset yet, the synthetic phantom set is generated there first.
        appearance: fields of :class:`~attnunet.phantom.randomize.AppearanceSpec`: render every
            training patch anew from the case's tissue map (the phantoms' ``tissuesTr/``);
            ``None``: train on the images as stored. Validation always uses the stored images.
    """

    def __init__(
        self,
        root: str,
        layout: str = "auto",
        dataset_json: str = "dataset.json",
        image_dir: str = "imagesTr",
        label_dir: str = "labelsTr",
        label_names: dict[int, str] | None = None,
        max_cases: int | None = None,
        merge_labels: dict[int, int] | None = None,
        preprocessing: dict[str, Any] | None = None,
        patch_size: Sequence[int] = (64, 64, 64),
        batch_size: int = 1,
        samples_per_volume: int = 2,
        positive_fraction: float = 0.67,
        positive_labels: Sequence[int] | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        folds: int | None = None,
        fold: int = 0,
        splits_file: str | None = None,
        cache: str = "memory",
        cache_rate: float = 1.0,
        cache_dir: str | None = None,
        num_workers: int = 1,
        augmentation: dict[str, Any] | None = None,
        synthetic: dict[str, Any] | None = None,
        appearance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.layout = layout
        self.dataset_json = self.root / dataset_json
        self.image_dir = image_dir
        self.label_dir = label_dir
        self.label_names = label_names
        if max_cases is not None and max_cases < 2:
            raise AttnUNetError(f"data.max_cases must be at least 2 (training + validation), got {max_cases}")
        self.max_cases = max_cases
        self.merge = merge_labels
        self.spec = PreprocessingSpec.from_dict(dict(preprocessing or {}))
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = batch_size
        self.samples_per_volume = samples_per_volume
        self.positive_fraction = positive_fraction
        self.positive_labels = None if positive_labels is None else [int(v) for v in positive_labels]
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.folds = folds
        self.fold = fold
        self.splits_file = Path(splits_file) if splits_file else None
        self.cache = cache
        self.cache_rate = cache_rate
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.num_workers = num_workers
        self.augmentation = AugmentationSpec(**(augmentation or {}))
        self.synthetic = synthetic
        self.appearance = None if appearance is None else AppearanceSpec.from_dict(dict(appearance))
        if self.appearance is not None and (self.spec.spacing is None or self.spec.normalization != "window"):
            raise AttnUNetError(
                "data.appearance renders patches on a fixed grid with the HU window: it needs "
                "data.preprocessing.spacing set and normalization=window"
            )
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        # {"train": [case ids], "val": [case ids]} of the whole run (all ranks), set by setup();
        # stored in checkpoints so evaluation scores exactly the cases the model did not train on.
        self.case_split: dict[str, list[str]] | None = None
        self.partitioned = False

    def prepare_data(self) -> None:
        """Generate the synthetic set on first use (runs once per node)."""
        if self.synthetic is not None and not self.dataset_json.exists():
            log.info("Generating the synthetic pancreas CT set in %s", self.root)
            phantom.write_dataset(self.root, **self.synthetic)

    @functools.cached_property
    def case_list(self) -> CaseList:
        """Every labelled case with the dataset's own label map (read once, after
        :meth:`prepare_data` has made sure the dataset exists)."""
        found = discover(
            self.layout, self.root, str(self.dataset_json), self.image_dir, self.label_dir, self.label_names
        )
        if self.max_cases is None:
            return found
        return CaseList(found.cases[: self.max_cases], found.labels, found.source)

    @functools.cached_property
    def _merged(self) -> tuple[dict[int, str], dict[int, int]]:
        return merge_labels(self.case_list.labels, self.merge)

    @property
    def labels(self) -> dict[int, str]:
        """Label map the network is trained on, ``{0: 'background', 1: 'pancreas', ...}`` (after merging)."""
        return self._merged[0]

    @property
    def flip_axes(self) -> list[int]:
        """Spatial axes training patches are mirrored along (none unless ``augmentation.flip_prob`` > 0)."""
        if self.augmentation.flip_prob <= 0:
            return []
        return list(range(patch_dims(self.patch_size)))

    @property
    def label_lookup(self) -> dict[int, int]:
        """Dataset label value -> training label value (identity unless ``merge_labels`` is set)."""
        return self._merged[1]

    def base_transforms(self, maps: Sequence[str] = ()) -> list[mt.MapTransform]:
        """Deterministic preprocessing of an image/label pair (the cached part, with label merging),
        and of the further ``maps`` of :func:`~attnunet.data.transforms.loading`."""
        return preprocessing(
            self.spec, num_labels=len(self.case_list.labels), label_lookup=self.label_lookup, maps=maps
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self.split()
        self.case_split = {"train": [c["case_id"] for c in train], "val": [c["case_id"] for c in val]}
        log.info("%d training and %d validation cases from %s", len(train), len(val), self.case_list.source)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Each rank loads (and caches) only its own share: training cases shuffled into equal
            # parts (padded by repeats so every rank runs the same number of steps), validation
            # cases dealt out without repeats (Dice is summed over ranks, see the module).
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            train = partition_dataset(
                train, num_partitions=world, shuffle=True, seed=self.split_seed, even_divisible=True
            )[rank]
            val, weights = validation_share(val, rank, world)
            self.partitioned = True
        maps = [] if self.appearance is None else [TISSUE]
        train_steps = self.base_transforms(maps) + training_sampling(
            self.patch_size,
            self.samples_per_volume,
            self.positive_fraction,
            self.augmentation,
            maps=maps,
            patch_steps=self._patch_steps(),
            positive_labels=self.positive_labels,
        )
        train = [self._with_tissue(c) for c in train] if maps else train
        self.train_set = self._dataset(train, train_steps, {"patch_size": self.patch_size, "maps": maps})
        self.val_set = self._dataset(val, self.base_transforms(), {})
        if self.partitioned:
            self.val_set = WeightedCases(self.val_set, weights)

    def _patch_steps(self) -> functools.partial | None:
        """``ndim -> steps`` rendering each patch from its tissue map, or None (picklable for workers)."""
        if self.appearance is None:
            return None
        assert self.spec.spacing is not None
        return functools.partial(
            patch_randomization, self.appearance, self.spec.spacing, self.spec.intensity_window, LABEL
        )

    def _with_tissue(self, case: Case) -> Case:
        """``case`` with its tissue map: ``<root>/<appearance.tissue_dir>/<label file name>``."""
        assert self.appearance is not None
        path = self.root / self.appearance.tissue_dir / Path(case["label"]).name
        if not path.is_file():
            raise AttnUNetError(
                "data.appearance needs a tissue map per case (the phantom set's tissuesTr/); "
                "set data.appearance=null for data without one",
                path,
            )
        return {**case, TISSUE: str(path)}

    def _dataset(self, cases: list[Case], steps: list[mt.MapTransform], extra: dict[str, Any]) -> Dataset:
        settings = {
            "preprocessing": self.spec.to_dict(),
            "label_lookup": self.label_lookup,
            "num_labels": len(self.case_list.labels),
            "sampling": extra,
        }
        key_dir = None if self.cache_dir is None else self.cache_dir / cache_key(settings)
        workers = min(self.num_workers, 4)
        return cached_dataset(cases, mt.Compose(steps), self.cache, self.cache_rate, key_dir, max(workers, 1))

    def split(self) -> tuple[list[Case], list[Case]]:
        """Training and validation cases: from ``splits_file``, k folds, or ``val_fraction``."""
        cases = self.case_list.cases
        if self.splits_file is not None and self.splits_file.is_file():
            folds = read_splits(self.splits_file)
        elif self.folds:
            folds = kfold_splits(cases, self.folds, self.split_seed)
        else:
            train, val = split_cases(cases, self.val_fraction, self.split_seed)
            folds = [{"train": [c["case_id"] for c in train], "val": [c["case_id"] for c in val]}]
        if not 0 <= self.fold < len(folds):
            raise AttnUNetError(f"fold {self.fold} does not exist; there are {len(folds)}", self.splits_file)
        if self.splits_file is not None and not self.splits_file.is_file() and _is_rank_zero():
            # One writer, whole file or none: every rank computed the same folds, so the others
            # need not wait for it; a later reader never sees a half-written file.
            write_text_atomically(self.splits_file, json.dumps(folds, indent=1))
        return apply_split(cases, folds[self.fold], self.splits_file or self.case_list.source)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=not self.partitioned,
            sampler=self._own_share_sampler(self.train_set, shuffle=True),
            num_workers=self.num_workers,
            collate_fn=list_data_collate,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        return DataLoader(
            self.val_set, batch_size=1, num_workers=0, sampler=self._own_share_sampler(self.val_set, shuffle=False)
        )

    def _own_share_sampler(self, dataset: Dataset, shuffle: bool) -> DistributedSampler | None:
        """Under DDP the datasets already hold only this rank's cases. Lightning would split them again
        with its own DistributedSampler unless the loader has one, so give it one of a single replica
        (it also reshuffles per epoch through Lightning's ``set_epoch`` calls)."""
        if not self.partitioned:
            return None
        return DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=shuffle, seed=self.split_seed)


def _is_rank_zero() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


def validation_share(val: list[Case], rank: int, world: int) -> tuple[list[Case], list[float]]:
    """This rank's validation cases (every ``world``-th, no repeats) padded to the same number on
    every rank with weight-0 repeats, so each rank runs the same validation loop (its hooks, and the
    Dice sum across ranks, need every rank) even with fewer cases than processes."""
    per_rank = -(-len(val) // world)
    mine = val[rank::world]
    padding = per_rank - len(mine)
    return mine + [val[0]] * padding, [1.0] * len(mine) + [0.0] * padding


class WeightedCases(TorchDataset):
    """Adds ``val_weight`` to each item of ``dataset`` after its transforms (and caches), so the
    cached volumes stay the same whatever a case weighs."""

    def __init__(self, dataset: Dataset, weights: Sequence[float]) -> None:
        self.dataset, self.weights = dataset, list(weights)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], VAL_WEIGHT: self.weights[index]}


class SyntheticDataModule(SegmentationDataModule):
    """The built-in default: the synthetic phantom set, generated into ``root`` on first use.

    Args:
        num_cases: cases to generate.
        synthetic_seed: generator seed (case ``i`` depends only on it and ``i``).
        lesions: add a lesion class (label 2) inside some of the pancreases.
        organs: add the organs around the pancreas as label classes after it (see
            :mod:`attnunet.phantom.organs`). They are context: unless ``positive_labels`` says
            otherwise, positive patches still centre on the pancreas (and lesion).
        **kwargs: as :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        num_cases: int = 32,
        synthetic_seed: int = 0,
        lesions: bool = False,
        organs: bool = False,
        **kwargs: Any,
    ) -> None:
        if organs and kwargs.get("positive_labels") is None:
            kwargs["positive_labels"] = [1, 2] if lesions else [1]
        synthetic = {"num_cases": num_cases, "seed": synthetic_seed, "lesions": lesions, "organs": organs}
        super().__init__(synthetic=synthetic, **kwargs)


class MSDDataModule(SegmentationDataModule):
    """A Medical Segmentation Decathlon task, optionally downloaded first.

    Args:
        task: MSD task folder name, e.g. ``Task07_Pancreas``.
        download: when ``root`` holds no ``dataset.json`` yet, download and extract the task with
            MONAI's :class:`~monai.apps.DecathlonDataset` (needs internet; ``root`` must be
            ``<parent>/<task>``).
        **kwargs: as :class:`SegmentationDataModule`.
    """

    def __init__(self, task: str = "Task07_Pancreas", download: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.download = download

    def prepare_data(self) -> None:
        if not self.download or self.dataset_json.exists():
            return
        if self.root.name != self.task:
            raise AttnUNetError(f"data.download=true needs data.root to end in {self.task}", self.root)
        from monai.apps import DecathlonDataset  # noqa: PLC0415 - only for this rare path

        log.info("Downloading %s into %s", self.task, self.root.parent)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        DecathlonDataset(root_dir=self.root.parent, task=self.task, section="training", download=True, cache_rate=0.0)
