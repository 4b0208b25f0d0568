"""Synthetic pancreas CT phantoms, written as a dataset in a real layout (MSD, nnU-Net, NIH).

``anatomy``: a tissue map of a whole abdominal scan (lung bases or heart down to the upper abdomen,
lower abdomen or pelvis) with the pancreas among its real neighbours, shapes bent by a random
elastic deformation, painted with ``canvas`` and the regions of ``skeleton``, ``lower_abdomen`` and
``thorax``; ``appearance``: contrast phase, per-tissue HU and texture, partial volume, point spread,
bias and noise (domain randomisation calibrated on real CT); ``randomize``: the same drawn anew for every
training patch from the stored tissue map, most of it at random (sim-to-real); ``case``: one case and its field of
view; ``hardness``: the best single-HU-interval baseline; ``writer``: the layouts.
Generation is deterministic in the seed: case ``i`` depends only on ``(seed, i)``.
"""

from attnunet.phantom.case import GENERATOR_VERSION, PhantomCase, make_case
from attnunet.phantom.writer import LABELS, LAYOUTS, ORIENTATIONS, TISSUE_DIR, reorient, write_dataset

__all__ = [
    "GENERATOR_VERSION",
    "LABELS",
    "LAYOUTS",
    "ORIENTATIONS",
    "TISSUE_DIR",
    "PhantomCase",
    "make_case",
    "reorient",
    "write_dataset",
]
