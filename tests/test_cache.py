"""Persistent disk cache (reuse, invalidation) and per-rank data partitions under DDP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from attnunet.data import transforms
from attnunet.data.datamodule import SegmentationDataModule, WeightedCases
from attnunet.errors import AttnUNetError
from attnunet.phantom import write_dataset


@pytest.fixture
def preprocess_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every case that goes through the (expensive) preprocessing head."""
    calls: list[str] = []
    original = transforms.InspectHeaderd.__call__

    def counting(self: transforms.InspectHeaderd, data: dict) -> dict:
        calls.append(str(data[transforms.IMAGE]))
        return original(self, data)

    monkeypatch.setattr(transforms.InspectHeaderd, "__call__", counting)
    return calls


def datamodule(root: Path, cache_dir: Path, **overrides: object) -> SegmentationDataModule:
    settings = {
        "root": str(root),
        "cache": "disk",
        "cache_dir": str(cache_dir),
        "preprocessing": {"spacing": (4.0, 4.0, 4.0)},
        "patch_size": (32, 32, 32),
        "val_fraction": 0.25,
        "num_workers": 0,
        **overrides,
    }
    dm = SegmentationDataModule(**settings)  # type: ignore[arg-type]
    dm.setup()
    return dm


def read_all(dm: SegmentationDataModule) -> list[torch.Tensor]:
    assert dm.train_set is not None and dm.val_set is not None
    return [dm.val_set[i]["image"] for i in range(len(dm.val_set))] + [
        dm.train_set[i][0]["image"] for i in range(len(dm.train_set))
    ]


def test_second_run_reads_the_cache_and_changed_settings_do_not(
    tiny_dataset: Path, tmp_path: Path, preprocess_calls: list[str]
) -> None:
    cache = tmp_path / "cache"
    first = read_all(datamodule(tiny_dataset, cache))
    assert len(preprocess_calls) == 4
    files = sorted(cache.rglob("*.pt"))
    assert len(files) == 4  # 3 training + 1 validation volume, in two keyed folders
    assert len({f.parent for f in files}) == 2

    preprocess_calls.clear()
    second = read_all(datamodule(tiny_dataset, cache))  # a new run: nothing is preprocessed again
    assert preprocess_calls == []
    assert sorted(cache.rglob("*.pt")) == files
    assert torch.equal(torch.as_tensor(first[0]), torch.as_tensor(second[0]))  # validation volume as cached

    # Changed spacing: fresh folders.
    read_all(datamodule(tiny_dataset, cache, preprocessing={"spacing": (5.0, 5.0, 5.0)}))
    assert len(preprocess_calls) == 4
    assert len(list(cache.rglob("*.pt"))) == 8


def test_an_edited_scan_is_preprocessed_again(tiny_dataset: Path, tmp_path: Path, preprocess_calls: list[str]) -> None:
    cache = tmp_path / "cache"
    dm = datamodule(tiny_dataset, cache)
    read_all(dm)
    val_image = Path(dm.split()[1][0]["image"])
    stat = val_image.stat()
    os.utime(val_image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as if rewritten
    preprocess_calls.clear()
    read_all(datamodule(tiny_dataset, cache))
    assert preprocess_calls == [str(val_image)]


def test_unwritable_cache_dir_is_a_clear_error(tiny_dataset: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AttnUNetError, match=r"/file/cache/\w+: cannot create the cache folder \(Not a directory\)$"):
        datamodule(tiny_dataset, blocker / "cache")


def test_each_ddp_rank_loads_only_its_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training cases are split into equal parts (padded), validation cases dealt out without repeats,
    and Lightning's sampler cannot split them a second time."""
    write_dataset(tmp_path / "ds", num_cases=5, seed=1)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        dm = SegmentationDataModule(root=str(tmp_path / "ds"), val_fraction=0.4, cache="none", num_workers=0)
        dm.setup()
        assert dm.train_set is not None and dm.val_set is not None
        train = [c["case_id"] for c in dm.train_set.data]
        assert isinstance(dm.val_set, WeightedCases)
        val = [c["case_id"] for c, w in zip(dm.val_set.dataset.data, dm.val_set.weights) if w > 0]
        loader = dm.train_dataloader()
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        assert loader.sampler.num_replicas == 1 and len(loader.sampler) == len(train)
        shares.append((train, val))
    all_train, all_val = (sorted(c["case_id"] for c in part) for part in dm.split())
    assert len(all_train) == 3 and len(all_val) == 2
    assert len(shares[0][0]) == len(shares[1][0]) == 2  # 3 cases: one repeated so both ranks run 2 steps
    assert set(shares[0][0] + shares[1][0]) == set(all_train)
    assert sorted(shares[0][1] + shares[1][1]) == all_val and len(shares[0][1]) == 1  # no repeats

    # Fewer validation cases than ranks: the rank without one runs a weight-0 repeat.
    weights = []
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        few = SegmentationDataModule(root=str(tmp_path / "ds"), val_fraction=0.2, cache="none", num_workers=0)
        few.setup()
        assert isinstance(few.val_set, WeightedCases) and len(few.val_set) == 1
        weights.append(few.val_set[0][transforms.VAL_WEIGHT])
    assert weights == [1.0, 0.0]
