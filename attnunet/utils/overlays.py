"""Slice pictures a person can read: windowed CT, label contours and attention heat maps.

Slices are put in radiological view (:func:`to_display`), resampled to square display pixels with a
short side of at least :data:`SHORT_SIDE` (:func:`display_slice`), coloured as ``(3, H, W)`` float
RGB in [0, 1], and laid out by :func:`compose` as titled panels with an optional colour bar into one
``(H, W, 3)`` uint8 picture. Attention uses a fixed 0-1 scale so pictures of different gates, cases
and epochs compare directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

# MONAI (imported before any picture is drawn, in training and inference) already imports
# matplotlib's colormaps, so using its colour table here costs no import time.
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

LABEL_COLOURS = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.2, 0.2], [0.2, 0.6, 1.0], [0.2, 1.0, 0.3], [1.0, 0.9, 0.2]])
SHORT_SIDE = 256  # display pixels on the short side of every panel, at least
COLOUR_MAP = "viridis"  # perceptually uniform, readable by colour-blind viewers, distinct from grey CT
MAX_OPACITY = 0.8  # the heat map's strongest opacity: some CT texture stays visible everywhere
# Opacity ramps linearly from 0 at the first alpha to MAX_OPACITY at the second. Below 0.15 a gate
# passes under 15% of its skip features; showing the plain CT there keeps the body readable and
# keeps faint low-alpha structure (window-to-window differences in air) from veiling the picture.
OPACITY_RAMP = (0.15, 0.75)
TICKS = (0.0, 0.5, 1.0)
BACKGROUND = 40  # grey level between panels, so black air does not merge with the page
FONT_SIZE = 13
GAP = 4
BAR_WIDTH = 14


def grey(ct: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` windowed CT in [0, 1] -> ``(3, H, W)``."""
    return ct.clamp(0, 1).float().expand(3, *ct.shape).clone()


@cache
def _lut() -> torch.Tensor:
    """``(256, 3)`` RGB table of :data:`COLOUR_MAP`."""
    return torch.from_numpy(colormaps[COLOUR_MAP](np.linspace(0, 1, 256))[:, :3]).float()


def colour_map(values: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` values on the fixed scale [0, 1] -> ``(3, H, W)`` colours of :data:`COLOUR_MAP`."""
    index = (values.float().clamp(0, 1) * 255).round().long()
    return _lut()[index].permute(2, 0, 1)


def opacity(alpha: torch.Tensor) -> torch.Tensor:
    """Heat-map opacity for alpha, same shape: 0 up to ``OPACITY_RAMP[0]``, then linear up to
    :data:`MAX_OPACITY` at ``OPACITY_RAMP[1]`` and above."""
    lo, hi = OPACITY_RAMP
    return MAX_OPACITY * ((alpha.float() - lo) / (hi - lo)).clamp(0, 1)


def heat_overlay(ct: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """CT slice with alpha coloured on top, opacity growing with alpha (:func:`opacity`): low alpha
    leaves the CT pixel unchanged, so colour marks where a gate passes signal and its value on the
    fixed scale. ``(H, W)`` each -> ``(3, H, W)``."""
    weight = opacity(alpha)
    return (1 - weight) * grey(ct) + weight * colour_map(alpha)


def label_overlay(ct: torch.Tensor, labels: torch.Tensor, fill: float = 0.35) -> torch.Tensor:
    """CT slice with each label tinted and its contour drawn at full colour. ``labels``: ``(H, W)`` int."""
    rgb = grey(ct)
    lab = labels.long()
    for k in range(1, int(lab.max().item()) + 1 if lab.numel() else 1):
        mask = (lab == k).float()
        if not mask.any():
            continue
        colour = LABEL_COLOURS[min(k, len(LABEL_COLOURS) - 1)].view(3, 1, 1)
        rgb = rgb * (1 - fill * mask) + colour * fill * mask
        rgb = outline(rgb, mask, colour)
    return rgb


def outline(rgb: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor | None = None) -> torch.Tensor:
    """``rgb`` ``(3, H, W)`` with the contour of ``mask`` ``(H, W)`` drawn in ``colour`` ``(3, 1, 1)``
    (white when None): the inner one-pixel edge, so the outline never covers what lies outside."""
    mask = mask.float()
    colour = torch.ones(3, 1, 1) if colour is None else colour
    eroded = -F.max_pool2d(-mask[None, None], 3, stride=1, padding=1)[0, 0]
    contour = (mask - eroded).clamp(0, 1)
    return rgb * (1 - contour) + colour * contour


def centroid_index(label: torch.Tensor, axis: int) -> int:
    """Index along ``axis`` of the foreground centroid of a label volume (the middle when empty)."""
    fg = torch.nonzero(label > 0)
    if len(fg) == 0:
        return label.shape[axis] // 2
    return int(fg[:, axis].float().mean().round().item())


def fullest_index(label: torch.Tensor, axis: int) -> int:
    """Index along ``axis`` of the slice with the most foreground voxels (the centroid's when empty):
    an oblique organ such as the pancreas shows its whole length there, not only a cut through it."""
    counts = (label > 0).sum(dim=[d for d in range(label.ndim) if d != axis])
    return int(counts.argmax().item()) if counts.any() else centroid_index(label, axis)


def to_display(slice_2d: torch.Tensor) -> torch.Tensor:
    """RAS ``(X, Y)`` axial slice -> ``(H, W)`` in radiological view (anterior up, patient right on the left)."""
    return torch.flip(slice_2d.transpose(0, 1), dims=(0, 1))


def display_size(shape: Sequence[int], spacing: Sequence[float], short_side: int = SHORT_SIDE) -> tuple[int, int]:
    """Pixels ``(H, W)`` showing a ``shape`` slice with voxel size ``spacing`` (mm along H and W) in
    square pixels: the finer voxel size, or smaller when needed for ``short_side`` pixels."""
    extent = [n * s for n, s in zip(shape, spacing)]
    pixel = min(*spacing, min(extent) / short_side)
    return round(extent[0] / pixel), round(extent[1] / pixel)


def display_slice(slice_2d: torch.Tensor, spacing: Sequence[float], nearest: bool = False) -> torch.Tensor:
    """RAS ``(X, Y)`` slice with voxel size ``spacing`` (mm along X and Y) -> ``(H, W)`` float in
    radiological view on the display grid of :func:`display_size`; ``nearest`` for label maps."""
    shown = to_display(slice_2d).float()
    size = display_size(shown.shape, (spacing[1], spacing[0]))
    if nearest:
        return F.interpolate(shown[None, None], size=size, mode="nearest-exact")[0, 0]
    return F.interpolate(shown[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def value_range(values: torch.Tensor | np.ndarray) -> str:
    """``"0.02-0.93"``: minimum and maximum to two decimals."""
    return f"{float(values.min()):.2f}-{float(values.max()):.2f}"


@dataclass
class Panel:
    """One picture of a row: ``rgb`` ``(3, H, W)`` in [0, 1] under one or two ``title`` lines."""

    title: Sequence[str]
    rgb: torch.Tensor


@cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow < 10.1: only the fixed-size bitmap font
        return ImageFont.load_default()


def colour_bar(height: int) -> torch.Tensor:
    """``(3, height, BAR_WIDTH)`` strip of :data:`COLOUR_MAP`, 1 at the top and 0 at the bottom."""
    values = torch.linspace(1, 0, height)[:, None].expand(height, BAR_WIDTH)
    return colour_map(values)


def compose(panels: Sequence[Panel], bar: bool = False, bar_label: str = "alpha") -> np.ndarray:
    """Panels (all the same size) side by side under their titles, plus a labelled 0-1 colour bar
    at the right when ``bar``: ``(H, W, 3)`` uint8."""
    font = _font()
    line = FONT_SIZE + 4
    lines = max(len(p.title) for p in panels)
    title_height = GAP + line * lines
    h, w = panels[0].rgb.shape[1:]
    if any(tuple(p.rgb.shape[1:]) != (h, w) for p in panels):
        raise ValueError(f"panels differ in size: {[tuple(p.rgb.shape[1:]) for p in panels]}")
    tick_width = max(round(font.getlength(f"{t:g}")) for t in TICKS) + 10
    bar_part = GAP + BAR_WIDTH + tick_width if bar else 0
    canvas = Image.new("RGB", (GAP + len(panels) * (w + GAP) + bar_part, title_height + h + GAP), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(canvas)
    for i, panel in enumerate(panels):
        x = GAP + i * (w + GAP)
        pixels = (panel.rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
        canvas.paste(Image.fromarray(pixels), (x, title_height))
        for j, text in enumerate(panel.title):
            draw.text((x + 2, GAP + j * line), text, fill=(255, 255, 255), font=font)
    if bar:
        x = GAP + len(panels) * (w + GAP)
        pixels = (colour_bar(h) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
        canvas.paste(Image.fromarray(pixels), (x, title_height))
        draw.text((x, GAP + line * (lines - 1)), bar_label, fill=(255, 255, 255), font=font)
        for t in TICKS:  # each label centred on its value's row, kept within the bar's height
            y = title_height + round((1 - t) * (h - 1))
            top = min(max(y - FONT_SIZE // 2 - 2, title_height), title_height + h - FONT_SIZE - 2)
            draw.text((x + BAR_WIDTH + 4, top), f"{t:g}", fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def stack(pictures: Sequence[np.ndarray]) -> np.ndarray:
    """``(H_i, W_i, 3)`` uint8 pictures one above the other, left-aligned on the background grey:
    ``(sum H_i, max W_i, 3)``. Rows of different widths (a model with fewer gates) stay readable."""
    width = max(p.shape[1] for p in pictures)
    rows = []
    for picture in pictures:
        row = np.full((picture.shape[0], width, 3), BACKGROUND, dtype=np.uint8)
        row[:, : picture.shape[1]] = picture
        rows.append(row)
    return np.concatenate(rows, axis=0)
