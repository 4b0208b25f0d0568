"""The names of one case's inference outputs: the single place that knows ``<case>_seg.nii.gz`` & co.

The runner writes through these paths, cleans up what an interrupted run left of them, and
``attnunet-evaluate`` tells segmentations from the side outputs with them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from attnunet.io.naming import stem
from attnunet.utils.atomic import remove_leftovers

SEGMENTATION = "_seg"
# Side outputs that are not segmentations (never scored as a prediction).
SIDE_OUTPUT = re.compile(r"_(probabilities|uncertainty|attention_[A-Za-z0-9]+)$")


@dataclass(frozen=True)
class OutputPaths:
    """Where the outputs of ``case`` go in ``out``."""

    out: Path
    case: str

    @property
    def segmentation(self) -> Path:
        """uint8 labels on the input grid; written last, so it marks a finished case."""
        return self.out / f"{self.case}{SEGMENTATION}.nii.gz"

    @property
    def probabilities(self) -> Path:
        """float32 ``(X, Y, Z, K)`` class probabilities."""
        return self.out / f"{self.case}_probabilities.nii.gz"

    def attention(self, gate: str) -> Path:
        """``(X, Y, Z)`` coefficients of one attention gate (scaled uint8 on disk, floats when read)."""
        return self.out / f"{self.case}_attention_{gate}.nii.gz"

    @property
    def uncertainty(self) -> Path:
        """float32 ``(X, Y, Z)`` predictive entropy of the (ensemble-, TTA-) averaged softmax."""
        return self.out / f"{self.case}_uncertainty.nii.gz"

    @property
    def dicom_seg(self) -> Path:
        """DICOM Segmentation object referencing the input series."""
        return self.out / f"{self.case}{SEGMENTATION}.dcm"

    def finished(self, output_format: str) -> Path:
        """The file written last for ``output_format``: its presence marks a finished case."""
        return self.dicom_seg if output_format == "dicom_seg" else self.segmentation

    @property
    def preview(self) -> Path:
        """PNG: CT | labels | attention per gate."""
        return self.out / f"{self.case}_preview.png"

    def remove_leftovers(self, gates: Iterable[str]) -> None:
        """Delete temporary files an interrupted run left for this case (never another case's,
        which a parallel shard may be writing)."""
        for path in (self.segmentation, self.probabilities, self.uncertainty, *(self.attention(g) for g in gates)):
            remove_leftovers(path, suffix=".nii.gz")
        remove_leftovers(self.preview, suffix=".png")
        remove_leftovers(self.dicom_seg, suffix=".dcm")


def predicted_case(path: Path) -> str | None:
    """Case name of a prediction file in a folder to be scored: ``<case>_seg.nii.gz`` (attnunet) or
    ``<case>.nii.gz`` (other tools); ``None`` for attnunet's side outputs (probabilities, attention)."""
    name = stem(path)
    if name.endswith(SEGMENTATION):
        return name[: -len(SEGMENTATION)]
    return None if SIDE_OUTPUT.search(name) else name
