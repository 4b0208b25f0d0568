"""Bounded-memory inference: the streamed read, the piecewise regrid and the slab mode give the
outputs of the one-piece path (MONAI's preprocessing, the whole box regridded at once)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai import transforms as mt

from attnunet.data.transforms import IMAGE, PreprocessingSpec, preprocessing
from attnunet.errors import AttnUNetError
from attnunet.inference import streamed_read
from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.predictor import Predictor, PredictorSettings
from attnunet.inference.regrid import RegridPlan, to_input_grid
from attnunet.inference.sliding_window import slabs, window_starts
from attnunet.inference.streamed_read import read_streamed
from tests.test_inference import make_checkpoint

CT = Path(__file__).parent / "data" / "abdomen_ct.nii.gz"


@pytest.fixture(scope="module")
def lps_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test CT stored as scanners store it: LPS voxel order, int16 with a slope and intercept."""
    img = nib.load(CT)
    data = np.asarray(img.dataobj)[::-1, ::-1]
    affine = img.affine @ np.array(
        [[-1, 0, 0, data.shape[0] - 1], [0, -1, 0, data.shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]]
    )
    out = nib.Nifti1Image((data + 1024).astype(np.uint16), affine)
    out.header.set_slope_inter(1.0, -1024.0)
    path = tmp_path_factory.mktemp("lps") / "lps_ct.nii.gz"
    nib.save(out, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt", {0: "background", 1: "pancreas"})


@pytest.mark.parametrize("spacing", [(4.0, 4.0, 4.0), (1.3, 1.7, 2.5), (7.0, 6.0, 10.0)])
@pytest.mark.parametrize("stored", ["ras", "lps"])
def test_streamed_read_equals_monai_preprocessing(
    spacing: tuple, stored: str, lps_ct: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streamed_read, "SLAB_VOXELS", 3 * 122 * 101)  # many slabs of 3 planes: the carry works
    path = CT if stored == "ras" else lps_ct
    spec = PreprocessingSpec(spacing=spacing)
    want = mt.Compose(preprocessing(spec, keys=[IMAGE]))({IMAGE: str(path)})[IMAGE]
    got = read_streamed(spec, path)[IMAGE]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.affine.numpy(), want.affine.numpy())
    np.testing.assert_array_equal(got.meta["spatial_shape"], want.meta["spatial_shape"])
    np.testing.assert_array_equal(got.meta["original_affine"], want.meta["original_affine"])
    # float64 resampling in another order: equal to within one float32 rounding step
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-6)


def test_streamed_read_refuses_nan_voxels(tmp_path: Path) -> None:
    data = np.zeros((8, 8, 8), np.float32)
    data[3, 3, 6] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(AttnUNetError, match="NaN or infinite voxels"):
        read_streamed(PreprocessingSpec(spacing=(2.0, 2.0, 2.0)), path)


@pytest.mark.parametrize("nifti_order", [False, True])
@pytest.mark.parametrize("flip", [False, True])
def test_regrid_pieces_equal_the_whole_box_bit_for_bit(nifti_order: bool, flip: bool) -> None:
    torch.manual_seed(0)
    volume = torch.rand(2, 9, 7, 11)
    net_affine = np.diag([2.5, 2.0, 3.0, 1.0])
    input_affine = np.diag([-1.0 if flip else 1.0, 0.8, 0.9, 1.0])
    input_affine[:3, 3] = [20.0 if flip else 0.3, -0.4, 0.7]
    shape, box = (24, 20, 38), (slice(1, 23), slice(0, 20), slice(2, 37))
    whole = to_input_grid(volume, net_affine, input_affine, shape, box, nifti_order)
    plan = RegridPlan.create(net_affine, input_affine, shape, volume.shape[1:], box, nifti_order)
    pieces = plan.pieces(3 * 22 * 20)
    assert len(pieces) > 3
    out = torch.full(whole.shape, -1.0)
    corner = [s.start for s in box]
    for piece in pieces:
        part = plan.resample_piece(volume, piece)
        part = part.permute(0, 3, 2, 1) if nifti_order else part
        out[(slice(None), *(slice(s.start - c, s.stop - c) for s, c in zip(piece, corner)))] = part
    assert torch.equal(out, whole)


def test_slabs_reproduce_the_one_piece_windows() -> None:
    size, roi, overlap = 200, 64, 0.25
    everywhere = window_starts(size, roi, overlap)
    pieces = slabs(size, roi, overlap, 100)
    assert len(pieces) > 1
    for piece in pieces:  # windows placed in the slab (as MONAI places them) are the one-piece ones
        inside = [piece.run.start + s for s in window_starts(piece.run.stop - piece.run.start, roi, overlap)]
        assert set(inside) <= set(everywhere)
        covering = {s for s in everywhere if s < piece.final.stop and s + roi > piece.final.start}
        assert covering <= set(inside)  # every window touching a final plane ran in this slab
    assert pieces[0].final.start == 0 and pieces[-1].final.stop == size
    for a, b in zip(pieces, pieces[1:]):
        assert b.final.start <= a.final.stop - 1  # one shared final plane at least: interpolation finds both


def test_default_path_outputs_are_those_of_the_one_piece_path(checkpoint: Path, lps_ct: Path) -> None:
    model = load_checkpoint(checkpoint)
    bounded = Predictor(model, PredictorSettings(device="cpu", precision="fp32", largest_component=False))(lps_ct)
    # keep_input runs MONAI's preprocessing; the reference regrids the whole box at once
    reference = Predictor(
        model, PredictorSettings(device="cpu", precision="fp32", largest_component=False, keep_input=True)
    )
    data = reference.read(lps_ct)
    with torch.inference_mode():
        probs, _ = reference._probabilities(data[IMAGE].as_tensor()[None])
    image = data[IMAGE]
    whole = to_input_grid(
        probs[0], image.affine.numpy(), image.meta["original_affine"], image.meta["spatial_shape"]
    ).numpy()
    assert bounded.box_probabilities is None  # a labels-only run never made them
    np.testing.assert_allclose(bounded.probabilities, whole, atol=1e-5)
    np.testing.assert_array_equal(bounded.labels, whole.argmax(0))
    assert 0 < bounded.labels.mean() < 1  # both classes present: the comparison means something


def test_slab_mode_gives_the_one_piece_labels(checkpoint: Path, lps_ct: Path) -> None:
    model = load_checkpoint(checkpoint)
    one_piece = Predictor(model, PredictorSettings(device="cpu", precision="fp32", largest_component=False))(lps_ct)
    slabbed = Predictor(model, PredictorSettings(device="cpu", precision="fp32", largest_component=False, slab_size=40))
    data = slabbed.read(lps_ct)
    longest = max(data[IMAGE].shape[1:])
    assert len(slabs(longest, 32, slabbed.window.overlap, 40)) >= 3  # cut into several slabs
    out = slabbed.predict(data)
    np.testing.assert_array_equal(out.labels, one_piece.labels)
    np.testing.assert_allclose(out.probabilities, one_piece.probabilities, atol=1e-5)


def test_slab_mode_is_refused_with_tta(checkpoint: Path) -> None:
    with pytest.raises(AttnUNetError, match="slab_size does not combine with tta"):
        Predictor(
            load_checkpoint(checkpoint), PredictorSettings(device="cpu", precision="fp32", slab_size=64, tta=True)
        )
