"""Session fixtures shared by the suites: a tiny phantom set (and one in the NIH layout), the cropped
real CT, one untrained test checkpoint and one trained smoke run (slow tests only)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import pytest

from attnunet.phantom import write_dataset
from tests.helpers import CT, PANCREAS, make_checkpoint, run_attnunet, source_env

# Around the pancreas of the real CT: 80 x 70 x 52 voxels of 3 mm instead of 122 x 101 x 112.
CROP = (slice(15, 95), slice(20, 90), slice(60, 112))


@pytest.fixture(scope="session", autouse=True)
def children_import_this_source_tree() -> Iterator[None]:
    """Every process a test starts (commands, scripts, ``python -c``) imports ``attnunet`` from this
    source tree, as the tests themselves do, never an installed copy of another version."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", source_env()["PYTHONPATH"])
        yield


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic cases (with lesions) in the MSD layout; returns the dataset folder."""
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    write_dataset(root, num_cases=4, seed=3, lesions=True)
    return root


@pytest.fixture(scope="session")
def nih_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic cases laid out as TCIA ships NIH Pancreas-CT (DICOM series + NIfTI labels)."""
    root = tmp_path_factory.mktemp("synthetic") / "nih"
    write_dataset(root, num_cases=3, seed=5, layout="nih")
    return root


@pytest.fixture(scope="session")
def cropped_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CT cropped around its pancreas (same voxels and world positions, a sixth of the size);
    its pancreas mask is beside it as ``pancreas.nii.gz``."""
    folder = tmp_path_factory.mktemp("cropped_ct")
    nib.save(nib.load(PANCREAS).slicer[CROP], folder / "pancreas.nii.gz")
    path = folder / "ct.nii.gz"
    nib.save(nib.load(CT).slicer[CROP], path)
    return path


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained binary (background, pancreas) checkpoint: 4 mm voxels, 32^3 windows, flips on all axes."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess, Path]:
    """``attnunet-train experiment=smoke`` once per session: (run dir, the finished process, data cache)."""
    cwd = tmp_path_factory.mktemp("work")
    cache = tmp_path_factory.mktemp("cache")
    result = run_attnunet(["train", "experiment=smoke"], cwd, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((cwd / "outputs" / "train").iterdir())
    assert len(runs) == 1
    return runs[0], result, cache
