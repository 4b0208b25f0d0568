"""Synthetic pancreas CT phantoms, written as a dataset in a real layout (MSD, nnU-Net, NIH).

``anatomy``: a tissue map of the upper abdomen with the pancreas among its real neighbours, shapes
bent by a random elastic deformation; ``appearance``: contrast phase, per-tissue HU and texture,
partial volume, point spread, bias and noise (domain randomisation calibrated on real CT);
``phantom``: one case; ``hardness``: the best single-HU-interval baseline; ``writer``: the layouts.
Generation is deterministic in the seed: case ``i`` depends only on ``(seed, i)``.
"""

from attnunet.data.synthetic.phantom import GENERATOR_VERSION, make_case
from attnunet.data.synthetic.writer import LABELS, LAYOUTS, ORIENTATIONS, reorient, write_dataset

__all__ = ["GENERATOR_VERSION", "LABELS", "LAYOUTS", "ORIENTATIONS", "make_case", "reorient", "write_dataset"]
