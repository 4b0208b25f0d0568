"""Output classes for the organs around the pancreas, painted from a phantom's tissue map.

Trained as classes of their own, the duodenum, bowel and vessels next to the pancreas are
something the network must name, instead of pancreas-or-background; the organs also give a
real CT with a multi-organ map something to score besides its pancreas (docs/results.md).
"""

from __future__ import annotations

import numpy as np

from attnunet.phantom.canvas import Tissue

# Output class -> the tissue classes it covers. The gut is one class because the phantom paints
# stomach, duodenum and bowel loops from the same wall and content tissues.
ORGAN_TISSUES: dict[str, tuple[Tissue, ...]] = {
    "liver": (Tissue.LIVER,),
    "spleen": (Tissue.SPLEEN,),
    "kidney": (Tissue.KIDNEY_CORTEX, Tissue.KIDNEY_MEDULLA),
    "gallbladder": (Tissue.BILE,),
    "gut": (Tissue.BOWEL_WALL, Tissue.BOWEL_FLUID, Tissue.GAS, Tissue.STOOL, Tissue.FOOD),
    "vessels": (Tissue.ARTERY, Tissue.SYSTEMIC_VEIN, Tissue.PORTAL_VEIN),
}


def with_organs(labels: dict[str, str]) -> dict[str, str]:
    """The label map ``{"0": "background", "1": "pancreas", ...}`` extended by one value per organ
    of :data:`ORGAN_TISSUES`, numbered after the existing values."""
    first = len(labels)
    return {**labels, **{str(first + i): name for i, name in enumerate(ORGAN_TISSUES)}}


def paint_organs(label: np.ndarray, tissue: np.ndarray, first_value: int) -> np.ndarray:
    """Label ``(X, Y, Z)`` (uint8: pancreas and, if asked for, lesion) with the organs added where it
    is background: organ ``i`` of :data:`ORGAN_TISSUES` becomes ``first_value + i`` (the number
    of classes before the organs, as :func:`with_organs` counts them).

    ``tissue`` is the case's tissue map on the same grid. The pancreas label keeps every voxel it
    had (its annotation includes enclosed fat and may cover vessel voxels).
    """
    if label.shape != tissue.shape:
        raise ValueError(f"label {label.shape} and tissue map {tissue.shape} differ in shape")
    out = label.copy()
    background = label == 0
    for i, tissues in enumerate(ORGAN_TISSUES.values()):
        out[background & np.isin(tissue, tissues)] = first_value + i
    return out
