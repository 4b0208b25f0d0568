"""Case names from file names: one rule for training lists, inference inputs and evaluation pairs.

A case is named after its file without the NIfTI ending. Only nnU-Net stores images with a channel
suffix, and for single-channel CT that is always ``_0000``: it is dropped only when *every* image of
the set carries it (an nnU-Net ``imagesTr``/``imagesTs`` folder). Any other ``_dddd`` ending is part
of the user's own name (``PANCREAS_0001``, ``amos_0005``), so distinct files never merge into one case.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from attnunet.errors import AttnUNetError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
NNUNET_CHANNEL = "_0000"


def is_nifti(path: str | Path) -> bool:
    """A NIfTI file name, not hidden (skips the macOS ``._*`` copies found in the MSD archives)."""
    name = Path(path).name
    return name.lower().endswith(NIFTI_SUFFIXES) and not name.startswith(".")


def stem(path: str | Path) -> str:
    """File name without ``.nii.gz``/``.nii`` (any case); a folder's (DICOM series) name as it is."""
    name = Path(path).name
    for ext in NIFTI_SUFFIXES:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def case_names(paths: Sequence[str | Path]) -> list[str]:
    """Case name per image file: the stem, without ``_0000`` when all stems end in it (nnU-Net)."""
    stems = [stem(p) for p in paths]
    if stems and all(s.endswith(NNUNET_CHANNEL) and len(s) > len(NNUNET_CHANNEL) for s in stems):
        return [s[: -len(NNUNET_CHANNEL)] for s in stems]
    return stems


def require_unique(names: Iterable[str], source: str | Path) -> None:
    """Refuse a list in which two inputs would share one case name (outputs would overwrite each
    other, and a training case could land on both sides of the split)."""
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise AttnUNetError(f"several inputs map to the same case name: {duplicates[:5]}", source)
