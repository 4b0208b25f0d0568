"""The bad-input catalogue: each gives one clean line naming the file, never a traceback or output."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnunet.data.datalist import load_cases
from attnunet.data.transforms import all_finite
from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.predictor import Predictor
from tests.helpers import run_cli

GOOD = np.random.default_rng(0).normal(0, 100, (24, 20, 16)).astype(np.int16)


def nifti_bytes(array: np.ndarray, affine: np.ndarray | None = None) -> bytes:
    img = nib.Nifti1Image(array, np.diag([1.5, 1.5, 3.0, 1]) if affine is None else affine)
    return gzip.compress(img.to_bytes())


def make(kind: str, path: Path) -> Path:
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind == "gzip cut in the header":
        path.write_bytes(nifti_bytes(GOOD)[:300])
    elif kind == "gzip cut in the voxels":
        whole = nifti_bytes(GOOD)
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "png renamed":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    elif kind == "4D volume":
        path.write_bytes(nifti_bytes(np.zeros((8, 8, 8, 3), np.int16)))
    elif kind == "2D volume":
        path.write_bytes(nifti_bytes(np.zeros((32, 32), np.int16)))
    elif kind == "NaN voxels":
        data = GOOD.astype(np.float32)
        data[3, 4, 5] = np.nan
        path.write_bytes(nifti_bytes(data))
    elif kind == "Inf voxels":
        data = GOOD.astype(np.float32)
        data[0, 0, 0] = np.inf
        path.write_bytes(nifti_bytes(data))
    elif kind == "zero voxel size":
        img = nib.Nifti1Image(GOOD, np.diag([1.5, 1.5, 3.0, 1]))
        img.header["pixdim"][3] = 0.0
        img.set_sform(None, code=0)
        img.set_qform(None, code=0)
        path.write_bytes(gzip.compress(img.to_bytes()))
    elif kind == "non-invertible affine":
        img = nib.Nifti1Image(GOOD, np.diag([1.5, 1.5, 3.0, 1]))
        img.set_qform(None, code=0)
        img.header["srow_y"] = [0.0, 0.0, 0.0, 0.0]  # sform with a zero row: no inverse
        path.write_bytes(gzip.compress(img.header.binaryblock + b"\x00" * 4 + GOOD.tobytes()))
    elif kind == "complex voxels":
        path.write_bytes(nifti_bytes((GOOD + 1j * GOOD).astype(np.complex64)))
    elif kind == "RGB voxels":
        rgb = np.zeros(GOOD.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        path.write_bytes(nifti_bytes(rgb))
    elif kind == "vector voxels":
        img = nib.Nifti1Image(np.zeros((*GOOD.shape, 1, 3), np.float32), np.diag([1.5, 1.5, 3.0, 1]))
        img.header.set_intent("vector")
        path.write_bytes(gzip.compress(img.to_bytes()))
    elif kind == "too large for memory":
        img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
        img.header.set_data_shape((5000, 5000, 5000))
        path.write_bytes(gzip.compress(img.header.binaryblock + b"\x00" * 4 + bytes(64)))
    return path


# The problem each bad file is reported with (the start of the message after "<path>: ").
INFER_CASES = {
    "empty file": "unreadable NIfTI (ImageFileError)",
    "gzip cut in the header": "unreadable NIfTI (ImageFileError)",
    "gzip cut in the voxels": "unreadable or unusable image (EOFError: Compressed file ended",
    "png renamed": "unreadable NIfTI (ImageFileError)",
    "4D volume": "expected a 3D volume, got shape (8, 8, 8, 3)",
    "2D volume": "expected a 3D volume, got shape (32, 32)",
    "NaN voxels": "image contains NaN or infinite voxels",
    "Inf voxels": "image contains NaN or infinite voxels",
    "zero voxel size": "voxel sizes must be positive, got [1.5, 1.5, 0.0]",
    "non-invertible affine": "affine is not invertible",
    "too large for memory": "volume of shape (5000, 5000, 5000) is too large",
    "complex voxels": "voxel type complex64 is not a real scalar",
    "RGB voxels": "voxel type RGB is not a real scalar",
    "vector voxels": "expected a 3D volume, got shape (24, 20, 16, 1, 3)",
}


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    return Predictor(load_checkpoint(checkpoint))


@pytest.mark.parametrize("kind", sorted(INFER_CASES))
def test_bad_image_gives_one_clean_line(kind: str, predictor: Predictor, tmp_path: Path) -> None:
    path = make(kind, tmp_path / "case.nii.gz")
    with pytest.raises(AttnUNetError) as info:
        predictor.preprocess(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {INFER_CASES[kind]}") and "\n" not in message


def test_good_image_passes(predictor: Predictor, tmp_path: Path) -> None:
    path = tmp_path / "ok.nii.gz"
    path.write_bytes(nifti_bytes(GOOD))
    assert predictor.preprocess(path).shape[0] == 1


def test_finiteness_is_exact_even_when_the_sum_overflows() -> None:
    huge = torch.full((4, 5, 6), 3e38)  # every voxel finite, their float32 sum is not
    assert all_finite(huge)
    for bad in (float("nan"), float("inf"), -float("inf")):
        volume = huge.clone()
        volume[1, 2, 3] = bad
        assert not all_finite(volume)
        assert not all_finite(torch.where(volume.isfinite(), torch.zeros(()), volume))  # the sum alone


def test_singleton_fourth_axis_is_a_3d_volume(predictor: Predictor, tmp_path: Path) -> None:
    """``(X, Y, Z, 1)`` (a one-frame series, common from converters) is read as the 3D volume."""
    plain, framed = tmp_path / "plain.nii.gz", tmp_path / "framed.nii.gz"
    plain.write_bytes(nifti_bytes(GOOD))
    framed.write_bytes(nifti_bytes(GOOD[..., None]))
    a, b = predictor.preprocess(plain), predictor.preprocess(framed)
    assert b.shape == a.shape and a.ndim == 4
    assert torch.equal(a.as_tensor(), b.as_tensor())


def test_complex_volume_exits_1_with_one_line(checkpoint: Path, tmp_path: Path) -> None:
    path = make("complex voxels", tmp_path / "ct.nii.gz")
    out = run_cli("infer", [f"ckpt_path={checkpoint}", f"input={path}", f"output_dir={tmp_path / 'o'}"], tmp_path)
    assert out.returncode == 1
    assert f"{path}: voxel type complex64 is not a real scalar" in out.stderr
    assert not list((tmp_path / "o").glob("*.nii.gz"))


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "not valid JSON"),
        ('{"labels": {"0": "background", "1": "pancreas"}, "training": []}', "no cases"),
        ('{"labels": {"0": "bg", "2": "x"}, "training": [{"image": "a", "label": "b"}]}', "labels must be 0..K-1"),
        ('{"training": [{"image": "a.nii.gz", "label": "b.nii.gz"}]}', "'labels' map"),
        (
            '{"labels": {"0": "bg", "1": "p"}, "training": [{"image": "./missing.nii.gz", "label": "./x.nii.gz"}]}',
            "does not exist",
        ),
    ],
)
def test_bad_dataset_json(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "dataset.json"
    path.write_text(content)
    with pytest.raises(AttnUNetError, match=problem):
        from attnunet.data.datalist import label_names, read_dataset_json

        label_names(read_dataset_json(path), path)
        load_cases(path)


@pytest.mark.slow  # the command end to end over whole volumes
def test_train_on_bad_labels_stops_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for i in range(3):
        (root / "imagesTr" / f"c{i}.nii.gz").write_bytes(nifti_bytes(GOOD))
        label = np.zeros(GOOD.shape, np.uint8)
        label[5:10, 5:10, 5:8] = 7 if i == 2 else 1  # a stray value in the third case
        (root / "labelsTr" / f"c{i}.nii.gz").write_bytes(nifti_bytes(label))
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "organ"}, "training": training}))
    tiny = ["model.channels=[4,8,16]", "data.patch_size=[16,16,16]", "trainer.max_epochs=1"]
    data = ["data=nifti_folder", f"data.root={root}", "data.val_fraction=0.34"]
    result = run_cli("train", [*tiny, *data], tmp_path, timeout=300)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "c2.nii.gz" in last and "outside the label map" in last
    assert "Traceback" not in result.stderr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_nifti_bytes_only_ever_give_our_error(predictor: Predictor, tmp_path_factory, data) -> None:
    """Random header/byte mutations of a valid file: either it still loads, or our clean error."""
    raw = bytearray(nifti_bytes(GOOD) if data.draw(st.booleans()) else nib.Nifti1Image(GOOD, np.eye(4)).to_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        where = data.draw(st.integers(0, min(len(raw) - 1, 400)))  # mostly the header
        raw[where] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    suffix = ".nii.gz" if raw[:2] == b"\x1f\x8b" else ".nii"
    path = tmp_path_factory.mktemp("fuzz") / f"case{suffix}"
    path.write_bytes(bytes(raw))
    try:
        out = predictor.preprocess(path)
    except AttnUNetError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
    else:
        assert out.ndim == 4
