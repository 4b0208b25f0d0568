"""Fast paths of inference: separable regridding (vs MONAI Invertd) and the channel argmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai import transforms as mt
from monai.data import MetaTensor

from attnunet.data.layouts import discover
from attnunet.data.transforms import IMAGE, PreprocessingSpec, preprocessing
from attnunet.inference.regrid import axis_map, to_input_grid
from attnunet.utils.channels import argmax_channels
from tests.helpers import stored_as

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def stored_orientations(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The synthetic scans (each in its own voxel order and spacing), the first of them stored in two
    more voxel orders, and the real test CT."""
    scans = [c["image"] for c in discover("auto", tiny_dataset).cases]
    folder = tmp_path_factory.mktemp("regrid")
    more = [str(stored_as(Path(scans[0]), code, folder / f"{code}.nii.gz")) for code in ("PIL", "SRA")]
    return [*scans, *more, str(DATA / "abdomen_ct.nii.gz")]


def test_separable_regrid_matches_invertd(stored_orientations: list[str]) -> None:
    pre = mt.Compose(preprocessing(PreprocessingSpec(spacing=(2.5, 2.0, 3.0)), keys=[IMAGE]))
    invert = mt.Invertd("pred", transform=pre, orig_keys=IMAGE, nearest_interp=False)
    for path in stored_orientations:
        image = pre({IMAGE: path})[IMAGE]
        smooth = torch.nn.functional.avg_pool3d(torch.rand(1, 3, *image.shape[1:]), 5, 1, 2)[0]
        probs = smooth / smooth.sum(0, keepdim=True)
        reference = invert({IMAGE: image, "pred": MetaTensor(probs, meta=dict(image.meta))})["pred"].float()
        fast = to_input_grid(probs, image.affine.numpy(), image.meta["original_affine"], image.meta["spatial_shape"])
        assert fast is not None and fast.shape == reference.shape
        inside = reference.sum(0) > 0.999  # Invertd leaves zeros where the body crop removed air
        assert inside.float().mean() > 0.8
        assert torch.allclose(fast[:, inside], reference[:, inside], atol=1e-5), path
        assert torch.allclose(fast.sum(0), torch.ones(fast.shape[1:]), atol=1e-5)  # still probabilities in air


def test_nifti_order_output_has_the_same_values_laid_out_first_axis_fastest(stored_orientations: list[str]) -> None:
    pre = mt.Compose(preprocessing(PreprocessingSpec(spacing=(2.5, 2.0, 3.0)), keys=[IMAGE]))
    for path in stored_orientations:
        image = pre({IMAGE: path})[IMAGE]
        volume = torch.rand(2, *image.shape[1:])
        grids = (image.affine.numpy(), image.meta["original_affine"], image.meta["spatial_shape"])
        box = tuple(slice(1, int(n) - 2) for n in image.meta["spatial_shape"])
        for region in (None, box):
            plain = to_input_grid(volume, *grids, region)
            nifti = to_input_grid(volume, *grids, region, nifti_order=True)
            assert plain is not None and nifti is not None
            assert plain.is_contiguous() and torch.allclose(plain, nifti, atol=1e-6), path  # pass order differs
            for channel in nifti.numpy():
                assert channel.flags.f_contiguous, path


def test_oblique_grids_fall_back() -> None:
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]]
    assert axis_map(np.eye(4), rotation) is None
    assert axis_map(np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([-1.0, 1.0, 1.0, 1.0])) == [
        (0, -0.5, 0.0),
        (1, 0.5, 0.0),
        (2, 0.5, 0.0),
    ]


def test_channel_argmax_equals_torch_argmax_with_ties() -> None:
    scores = torch.randint(0, 3, (4, 2, 9, 8, 7)).float()  # many ties: the first maximum wins
    assert torch.equal(argmax_channels(scores, 1), scores.argmax(1))
    assert torch.equal(argmax_channels(scores[0], 0), scores[0].argmax(0))
    assert torch.equal(argmax_channels(scores[0], 0, torch.uint8), scores[0].argmax(0).to(torch.uint8))
