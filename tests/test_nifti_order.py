"""Outputs are laid out in NIfTI's voxel order before writing, and inputs back in C order after
reading, without changing a value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from attnunet.data.transforms import load_images
from attnunet.inference.io import save_like
from attnunet.io.nifti_order import SLAB, in_c_order, in_nifti_order

RNG = np.random.default_rng(0)


ARRAYS = [
    RNG.integers(0, 3, (SLAB * 2 + 5, 7, 6)).astype(np.uint8),  # not a whole number of slabs
    RNG.random((9, 8, 7, 2)).astype(np.float32),  # (X, Y, Z, K) probabilities
    np.moveaxis(RNG.random((2, 9, 8, 7)), 0, -1),  # a strided view, float64
    RNG.integers(-1000, 1000, (10, 6, 4)).astype(np.int16)[::-1, :, ::-2],  # negative strides
    np.asfortranarray(RNG.integers(-1024, 3000, (SLAB * 2 + 3, 7, 6)).astype(np.int16)),  # as nibabel reads
    np.asfortranarray(RNG.random((9, 8, 7, 1))),  # a trailing singleton axis, float64
    RNG.integers(0, 9, (8, 10, 12)).astype(np.uint8)[::2, ::-1],  # a strided view
]


@pytest.mark.parametrize("array", ARRAYS)
@pytest.mark.parametrize("dtype", [None, np.float32])  # None: the array's own; float32: cast in the same pass
@pytest.mark.parametrize(("reorder", "contiguous"), [(in_nifti_order, "f_contiguous"), (in_c_order, "c_contiguous")])
def test_values_kept_in_the_order_asked(
    array: np.ndarray, dtype: type | None, reorder: Callable[..., np.ndarray], contiguous: str
) -> None:
    ordered = reorder(array, dtype)
    assert getattr(ordered.flags, contiguous) and ordered.dtype == (array.dtype if dtype is None else dtype)
    np.testing.assert_array_equal(ordered, array.astype(ordered.dtype))


def test_arrays_already_in_order_are_passed_through() -> None:
    fortran, c_ordered = np.asfortranarray(RNG.random((5, 4, 3))), RNG.random((5, 4, 3))
    assert in_nifti_order(fortran) is fortran and in_c_order(c_ordered) is c_ordered


def test_the_loader_reads_nifti_voxels_c_ordered_and_unchanged(tmp_path: Path) -> None:
    volume = RNG.integers(-1024, 2000, (21, 17, 13)).astype(np.int16)
    affine = np.diag([-0.7, -0.7, 2.0, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "ct.nii.gz")
    image = load_images(["image"])({"image": str(tmp_path / "ct.nii.gz")})["image"]
    assert image.is_contiguous() and tuple(image.shape) == volume.shape
    np.testing.assert_array_equal(image.numpy(), volume)
    np.testing.assert_allclose(image.meta["original_affine"], affine, atol=1e-6)  # float32 header


def test_save_like_writes_c_ordered_arrays_voxel_for_voxel(tmp_path: Path) -> None:
    reference = nib.Nifti1Image(np.zeros((1, 1, 1), np.int16), np.diag([0.8, 0.8, 2.5, 1.0]))
    labels = RNG.integers(0, 4, (40, 33, 21)).astype(np.uint8)
    codes = RNG.integers(0, 256, (40, 33, 21)).astype(np.uint8)
    save_like(labels, reference, tmp_path / "labels.nii.gz", set())
    save_like(codes, reference, tmp_path / "alpha.nii.gz", set(), slope=1 / 255)
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "labels.nii.gz").dataobj), labels)
    alpha = nib.load(tmp_path / "alpha.nii.gz")
    assert alpha.get_data_dtype() == np.uint8 and alpha.dataobj.slope == pytest.approx(1 / 255)
    np.testing.assert_allclose(alpha.get_fdata(), codes / 255, rtol=0, atol=1e-7)
