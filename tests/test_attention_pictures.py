"""Attention pictures a person can read, and attention maps without seams or streaks.

Covers the slice pictures (size, colour bar, opacity), ``save_preview`` on the real CT, the window
blending of the maps, the zero outside the body crop and the one-pass regrid of the maps.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from attnunet.inference.checkpoint import load_checkpoint
from attnunet.inference.predictor import ALPHA_STEPS, Prediction, Predictor, PredictorSettings
from attnunet.inference.preview import render_preview
from attnunet.inference.regrid import network_box, to_input_grid
from attnunet.inference.sliding_window import SlidingWindowSpec, predict_logits, predict_with_attention
from attnunet.models.attention_unet import NetOutput
from attnunet.utils import overlays
from tests.helpers import CT, boxes, is_colour_bar

WINDOW = (-175.0, 250.0)


@pytest.fixture(scope="module")
def real_ct_prediction(checkpoint: Path) -> Prediction:
    return Predictor(load_checkpoint(checkpoint), PredictorSettings(precision="fp32", attention=True))(CT)


def test_colour_map_is_matplotlibs_viridis_on_a_fixed_scale() -> None:
    values = torch.tensor([[0.0, 0.25, 0.5, 1.0, 1.7, -0.3]])
    rgb = overlays.colour_map(values)[:, 0].T.numpy()
    expected = matplotlib.colormaps["viridis"](np.array([0.0, 0.25, 0.5, 1.0, 1.0, 0.0]))[:, :3]
    np.testing.assert_allclose(rgb, expected, atol=1 / 255)


def test_low_alpha_leaves_the_ct_and_opacity_grows_with_alpha() -> None:
    ct = torch.rand(40, 50)
    for low in (0.0, overlays.OPACITY_RAMP[0]):
        assert torch.equal(overlays.heat_overlay(ct, torch.full_like(ct, low)), overlays.grey(ct))
    change = [
        (overlays.heat_overlay(ct, torch.full_like(ct, a)) - overlays.grey(ct)).abs().mean() for a in (0.3, 0.5, 1)
    ]
    assert 0 < change[0] < change[1] < change[2]
    assert overlays.opacity(torch.tensor(1.0)) == overlays.MAX_OPACITY < 1  # the CT shows through everywhere


def test_display_grid_has_square_pixels_and_a_short_side_of_256() -> None:
    assert overlays.display_size((101, 122), (3.0, 3.0)) == (256, 309)
    assert overlays.display_size((512, 512), (0.8, 0.8)) == (512, 512)  # never shrunk below the voxels
    # 2x anisotropic voxels: same physical field as 101 x 122 at 3 mm, shown with the same shape.
    iso = overlays.display_slice(torch.rand(122, 101), (3.0, 3.0))
    aniso = overlays.display_slice(torch.rand(61, 101), (6.0, 3.0))
    assert iso.shape == aniso.shape == (256, 309)
    labels = overlays.display_slice(torch.randint(0, 3, (61, 101)), (6.0, 3.0), nearest=True)
    assert set(labels.unique().tolist()) <= {0, 1, 2}


def test_composed_picture_has_titles_panels_and_a_colour_bar() -> None:
    ct = torch.rand(256, 300)
    panels = [overlays.Panel(["CT"], overlays.grey(ct)), overlays.Panel(["level1", "0.10-0.90"], overlays.grey(ct))]
    picture = overlays.compose(panels, bar=True)
    found = boxes(picture)
    assert [(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in found[:2]] == [(256, 300)] * 2
    bar = found[2]
    assert bar[0].stop - bar[0].start == 256 and is_colour_bar(picture[bar][:, : overlays.BAR_WIDTH])
    assert (picture[: found[0][0].start] > 200).any()  # white title text above the panels
    assert len(boxes(overlays.compose(panels))) == 2  # no bar unless asked


def test_preview_on_the_real_ct_is_readable(real_ct_prediction: Prediction) -> None:
    ct = np.asanyarray(nib.load(CT).dataobj)
    picture = render_preview(ct, real_ct_prediction, WINDOW)
    found = boxes(picture)
    assert len(found) == 4  # CT | labels | level1 | colour bar
    *panels, bar = found
    for rows, cols in panels:
        assert min(rows.stop - rows.start, cols.stop - cols.start) >= 256
        assert (rows.stop - rows.start, cols.stop - cols.start) == (256, 309)  # 101 x 122 voxels of 3 mm
    assert is_colour_bar(picture[bar][:, : overlays.BAR_WIDTH])
    ct_panel, gate_panel = picture[panels[0]], picture[panels[2]]
    assert ct_panel.std() > 10 and np.array_equal(ct_panel[..., 0], ct_panel[..., 1])  # grey CT
    assert not np.array_equal(ct_panel, gate_panel)


def test_preview_shows_the_plain_ct_where_alpha_is_zero(real_ct_prediction: Prediction) -> None:
    ct = np.asanyarray(nib.load(CT).dataobj)
    alpha = np.zeros(ct.shape, np.uint8)
    alpha[:, :50] = ALPHA_STEPS  # posterior half (RAS: low Y) fully attended
    prediction = Prediction(
        labels=np.zeros(ct.shape, np.uint8),
        box_probabilities=np.zeros((2, *ct.shape), np.float32),
        input_affine=real_ct_prediction.input_affine,
        attention={"level1": alpha},
    )
    picture = render_preview(ct, prediction, WINDOW)
    ct_panel, _, gate_panel = (picture[box].astype(int) for box in boxes(picture)[:3])
    anterior, posterior = slice(0, 100), slice(-100, None)  # display rows: anterior up
    assert np.array_equal(gate_panel[anterior], ct_panel[anterior])
    assert np.abs(gate_panel[posterior] - ct_panel[posterior]).mean() > 50


class WindowDependentNet(nn.Module):
    """Stands in for a network whose output depends on the window (as instance norm makes it):
    logits ``(v, -v)`` and gate ``v`` with ``v = x + mean of the window``."""

    spatial_dims = 3
    attention_names = ["gate"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_detailed(x).logits

    def forward_detailed(self, x: torch.Tensor) -> NetOutput:
        v = x + x.mean(dim=(2, 3, 4), keepdim=True)
        return NetOutput(logits=torch.cat([v, -v], 1), attention={"gate": v})

    def attention_maps_from(self, out: NetOutput, spatial: tuple[int, ...]) -> dict[str, torch.Tensor]:
        return out.attention


def test_maps_are_blended_over_windows_with_the_logits_weights() -> None:
    net = WindowDependentNet()
    image = torch.rand(1, 1, 40, 30, 20) * torch.linspace(0, 3, 40).view(1, 1, 40, 1, 1)
    spec = SlidingWindowSpec(roi_size=(16, 16, 16), overlap=0.25, sw_batch_size=3)
    logits, maps = predict_with_attention(net, image, spec)
    assert torch.equal(logits, predict_logits(net, image, spec))
    torch.testing.assert_close(maps["gate"], logits[:, :1], rtol=0, atol=1e-6)
    # The windows do disagree (else any weights would pass): the blend is not x + one global mean.
    assert (maps["gate"] - image).std() > 0.05


def test_network_box_and_regridding_only_the_box() -> None:
    input_affine = np.diag([3.0, 3.0, 3.0, 1.0])
    net_affine = np.diag([6.0, 6.0, 3.0, 1.0])
    net_affine[:3, 3] = [4.5 * 3, 2.5 * 3, 0.0]  # network voxel 0 = input voxels 4-5 (x), 2-3 (y), 0 (z)
    box = network_box(net_affine, input_affine, (6, 4, 20), (20, 20, 20))
    assert box == (slice(4, 16), slice(2, 10), slice(0, 20))
    volume = torch.rand(2, 6, 4, 20, generator=torch.Generator().manual_seed(0))
    whole = to_input_grid(volume, net_affine, input_affine, (20, 20, 20))
    part = to_input_grid(volume, net_affine, input_affine, (20, 20, 20), box)
    assert whole is not None and part is not None and part.shape == (2, 12, 8, 20)
    torch.testing.assert_close(part, whole[(slice(None), *box)], rtol=0, atol=1e-6)
    swapped = input_affine[:, [1, 0, 2, 3]]  # input axis 0 runs along world y, axis 1 along x
    assert network_box(net_affine, swapped, (6, 4, 20), (20, 20, 20)) == (slice(2, 10), slice(4, 16), slice(0, 20))


@pytest.fixture(scope="module")
def body_in_air(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 96 x 96 x 40 field of air (3 mm) with the real CT's central 48 x 40 x 40 block in the
    middle: the body crop keeps about a quarter of each axial slice."""
    src = np.asanyarray(nib.load(CT).dataobj).astype(np.int16)
    volume = np.full((96, 96, 40), -1024, np.int16)
    volume[24:72, 28:68] = src[37:85, 30:70, 36:76]
    path = tmp_path_factory.mktemp("air") / "body_in_air.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([3.0, 3.0, 3.0, 1.0])), path)
    return path


def test_attention_is_zero_outside_the_body_crop_not_edge_extended(checkpoint: Path, body_in_air: Path) -> None:
    predictor = Predictor(load_checkpoint(checkpoint), PredictorSettings(precision="fp32", attention=True))
    out = predictor(body_in_air)
    box = out.network_box
    assert box is not None and box[0].stop - box[0].start < 70 and box[1].stop - box[1].start < 70  # cropped
    alpha = out.alpha("level1")
    inside = alpha[box]
    assert inside.min() > 0 and inside.std() > 1e-3  # the network's own map inside the crop
    outside = np.ones(alpha.shape, bool)
    outside[box] = False
    assert outside.mean() > 0.5 and np.abs(alpha[outside]).max() == 0  # no streaks of the crop's edge values
    np.testing.assert_allclose(out.probabilities.sum(0), 1.0, atol=1e-4)
    assert (out.probabilities[0][outside] == 1).all() and not out.labels[outside].any()  # background there


def stored_as(path: Path, axcodes: tuple[str, str, str]) -> Path:
    """The same scan with its voxels stored in another axis order (``axcodes``), same world positions."""
    image = nib.load(path)
    start = nib.orientations.io_orientation(image.affine)
    moved = image.as_reoriented(nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(axcodes)))
    target = path.with_name(f"{path.name.split('.')[0]}_{''.join(axcodes)}.nii.gz")
    nib.save(moved, target)
    return target


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("P", "I", "L")])
def test_one_pass_box_regrid_equals_regridding_each_gate_whole(
    checkpoint: Path, body_in_air: Path, axcodes: tuple[str, str, str]
) -> None:
    scan = stored_as(body_in_air, axcodes)
    model = load_checkpoint(checkpoint)
    with_maps = Predictor(model, PredictorSettings(precision="fp32", attention=True))
    out = with_maps(scan)
    plain = Predictor(model, PredictorSettings(precision="fp32"))(scan)
    np.testing.assert_array_equal(out.probabilities, plain.probabilities)  # the maps do not disturb them
    np.testing.assert_array_equal(out.labels, plain.labels)
    image = with_maps.preprocess(scan)
    with torch.inference_mode():
        _, maps = predict_with_attention(with_maps.net, image.as_tensor()[None], with_maps.window)
    affines = image.affine.numpy(), image.meta["original_affine"], image.meta["spatial_shape"]
    for gate, alpha in maps.items():
        separate = to_input_grid(alpha[0].float(), *affines)[0].numpy()
        inside = np.zeros(separate.shape, bool)
        inside[out.network_box] = True
        # Kept as uint8 codes: within half a step of the float map.
        np.testing.assert_allclose(out.alpha(gate)[inside], separate[inside], rtol=0, atol=0.5 / ALPHA_STEPS + 1e-6)
        assert not out.attention[gate][~inside].any()  # 0 where the network never ran
        assert out.attention[gate].flags.f_contiguous  # NIfTI voxel order: written without a transpose
