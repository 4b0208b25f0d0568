"""Keep-the-largest-component post-processing, and the rule that decides it on validation.

A single organ such as the pancreas is one connected piece, so stray islands of a label are false
positives; but removing all but the largest piece ruins a case whose largest piece is the wrong one.
As nnU-Net does, the choice is made on the validation cases, per label: training scores every
validation case with and without it, the checkpoint stores the labels for which it helped
(:data:`STORED_KEY`), and inference applies it to those labels when ``largest_component=auto``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from attnunet.utils.geometry import bounding_box

STORED_KEY = "largest_component"  # CheckpointDescription.postprocessing[STORED_KEY]: label values
AUTO = "auto"
# A label is post-processed only when its validation Dice rises by more than this (nnU-Net's rule,
# "better, not equal"): a change within rounding noise is no reason to delete anything.
MIN_GAIN = 1e-4


def keep_largest_component(labels: torch.Tensor, applied: Sequence[int]) -> torch.Tensor:
    """Label map ``(1, *S)`` -> a new map in which every label of ``applied`` keeps only its largest
    connected piece (neighbours across faces, edges and corners); its other pieces become background.

    Written by hand rather than with MONAI's ``KeepLargestConnectedComponent``, which labels and
    counts over the whole volume: here the labelling runs only inside the label's bounding box, a
    small part of a full CT, and inference applies it by default
    (docs/explanation/inference-path.md#what-each-choice-buys-measured).
    """
    if not applied:
        return labels
    volume = labels[0].cpu().numpy()
    out = volume.copy()
    for k in applied:
        mask = volume == k
        box = bounding_box(mask)
        if box is None:
            continue
        inside = mask[box]
        pieces, count = ndimage.label(inside, structure=np.ones((3,) * inside.ndim, dtype=bool))
        if count > 1:
            boxes = ndimage.find_objects(pieces)
            sizes = [int(np.count_nonzero(pieces[b] == i + 1)) for i, b in enumerate(boxes)]
            out[box][inside & (pieces != 1 + int(np.argmax(sizes)))] = 0
    return torch.from_numpy(out)[None].to(labels.device)


def foreground_labels(labels: Iterable[int]) -> list[int]:
    """The label values other than background (0), in order."""
    return sorted(k for k in labels if k != 0)


def labels_that_gain(
    dice: Mapping[int, float], dice_kept: Mapping[int, float], min_gain: float = MIN_GAIN
) -> list[int]:
    """The labels whose mean validation Dice rises when only their largest piece is kept.

    ``dice`` / ``dice_kept``: ``{label value: mean Dice over the validation cases}`` without / with
    the post-processing (labels with no reference in any case are left out of both).
    """
    return sorted(k for k, before in dice.items() if k in dice_kept and dice_kept[k] - before > min_gain)


def stored_choice(meta: Mapping[str, Any]) -> list[int]:
    """The labels a checkpoint's training chose on validation (none for checkpoints from before)."""
    chosen = (meta.get("postprocessing") or {}).get(STORED_KEY) or []
    return sorted(int(k) for k in chosen)


def resolve_largest_component(
    setting: bool | str, metas: Iterable[Mapping[str, Any]], foreground: Sequence[int]
) -> list[int]:
    """The labels to post-process: ``True`` every foreground label, ``False`` none, ``auto`` those
    chosen on validation, for an ensemble those that more than half of its members chose."""
    if not isinstance(setting, bool) and str(setting).lower() != AUTO:
        raise ValueError(f"largest_component must be auto, true or false, got {setting!r}")
    if isinstance(setting, str):
        choices = [stored_choice(meta) for meta in metas]
        return [k for k in foreground if 2 * sum(k in c for c in choices) > len(choices)]
    return list(foreground) if setting else []
