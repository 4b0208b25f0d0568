"""A folder as a scanner, PACS or CD exports a study: its DICOM series, which of them can be
segmented, and case names a user recognises.

Every folder holding DICOM files (the input folder or any folder below it) is grouped by
SeriesInstanceUID. A series is a case when it can be segmented: CT images on a 3D grid. Skipped,
with one notice each: structured reports (radiation dose reports), secondary captures (dose report
pages, screenshots), localizers (ImageType ``LOCALIZER``), other modalities, and series with fewer
than :data:`MIN_SLICE_POSITIONS` distinct slice positions (scouts, bolus-tracking monitoring
series). Whether the images of a series form a regular grid is checked when it is read.

Case names: a folder holding one series is named as before (the folder's name, or its path below
the input joined by ``_``); each series of a folder holding several is
``<folder>_s<SeriesNumber>_<SeriesDescription>``, made file-name safe. The reader is given the
folder for a series that fills it, else the series' first file, which stands for its series (see
:func:`attnunet.io.dicom.read_series_geometry`).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from attnunet.errors import AttnUNetError
from attnunet.io.dicom import dicom_series_dirs, image_files, read_headers, series_uid, slice_headers

log = logging.getLogger("attnunet")

# Fewer distinct slice positions than this is a scout or a monitoring series, not a volume to segment.
MIN_SLICE_POSITIONS = 8
STRUCTURED_REPORT_CLASSES = "1.2.840.10008.5.1.4.1.1.88."  # SR documents, radiation dose reports among them
SECONDARY_CAPTURE_CLASSES = "1.2.840.10008.5.1.4.1.1.7"  # single- and multi-frame secondary captures
NAME_LENGTH = 64  # characters of a SeriesDescription kept in a case name


@dataclass(frozen=True)
class StudySeries:
    """One series found in a folder.

    Attributes:
        uid: SeriesInstanceUID.
        number: SeriesNumber as written (``""`` when absent).
        description: SeriesDescription (``""`` when absent).
        source: what the reader is given: the folder when the series fills it, else its first file.
        skipped: why the series cannot be segmented, or ``None``.
    """

    uid: str
    number: str
    description: str
    source: Path
    skipped: str | None

    @property
    def label(self) -> str:
        """``series 3 'Abdomen 1.0 B30f'`` (the UID when the series has no number)."""
        return f"series {self.number or self.uid} {self.description!r}"

    def matches(self, pick: str) -> bool:
        """Whether ``series=<pick>`` names this series, by SeriesNumber or SeriesInstanceUID."""
        return pick in (self.number, self.uid)


def folder_series(folder: Path) -> list[StudySeries]:
    """The series of the DICOM files directly in ``folder`` (DICOMDIR indexes left out), each
    classified, in order of SeriesNumber."""
    files = image_files(folder)
    headers = read_headers(files)
    groups: dict[str, list[int]] = {}
    for i, header in enumerate(headers):
        groups.setdefault(series_uid(header), []).append(i)
    found = []
    for uid, members in groups.items():
        first = headers[members[0]]
        found.append(
            StudySeries(
                uid=uid,
                number=str(first.get("SeriesNumber", "") or ""),
                description=str(first.get("SeriesDescription", "") or "").strip(),
                source=folder if len(groups) == 1 else files[members[0]],
                skipped=why_not_segmentable([files[i] for i in members], [headers[i] for i in members]),
            )
        )
    return sorted(found, key=lambda s: (int(s.number) if s.number.lstrip("-").isdigit() else float("inf"), s.uid))


def why_not_segmentable(files: list[Path], headers: list[pydicom.Dataset]) -> str | None:
    """Why a series (its files and their headers) is no CT volume, in a few words; ``None`` if it may be one."""
    first = headers[0]
    sop_class = str(first.get("SOPClassUID", ""))
    image_type = [str(v).upper() for v in (first.get("ImageType") or [])]
    modality = str(first.get("Modality", "") or "").upper()
    if sop_class.startswith(STRUCTURED_REPORT_CLASSES):
        return "a structured report (e.g. a dose report), not an image"
    if sop_class.startswith(SECONDARY_CAPTURE_CLASSES):
        return "a secondary capture (e.g. a dose report page), not a CT acquisition"
    if "LOCALIZER" in image_type:
        return "a localizer (scout)"
    if modality and modality != "CT":
        return f"modality {modality}, not CT"
    positions = _distinct_positions(files, headers)
    if positions < MIN_SLICE_POSITIONS:
        return f"{positions} slice position(s), fewer than {MIN_SLICE_POSITIONS}: no volume to segment"
    return None


def study_cases(path: Path, pick: str | None = None) -> list[tuple[str, Path]]:
    """``(case name, reader source)`` per series that can be segmented in the DICOM folders at or
    below ``path`` (a DICOM file: its own series). Each skipped series is logged as one line.

    ``pick`` (``series=``) keeps only the series with that SeriesNumber or SeriesInstanceUID; none
    found, or a picked series that cannot be segmented, is a one-line :class:`AttnUNetError`.
    """
    if path.is_file():
        folders = [path.parent]
        own, uid = folder_series(path.parent), series_uid(read_headers([path])[0])
        found = [(path.parent.name, [s for s in own if s.uid == uid], len(own) > 1)]
    else:
        folders = dicom_series_dirs(path)
        found = []
        for folder in folders:
            series = folder_series(folder)
            base = path.name if folder == path else "_".join(folder.relative_to(path).parts)
            found.append((base, series, len(series) > 1))
    cases: list[tuple[str, Path]] = []
    picked: list[StudySeries] = []
    for (base, series, several), folder in zip(found, folders):
        names = _case_names(base, series, several)
        for s, name in zip(series, names):
            if pick is not None and not s.matches(str(pick)):
                continue
            picked.append(s)
            if s.skipped is None:
                cases.append((name, s.source))
            elif pick is not None:
                raise AttnUNetError(f"{s.label} cannot be segmented: {s.skipped}", folder)
            else:
                log.warning("skipped %s: %s: %s", folder, s.label, s.skipped)
    if pick is not None and not picked:
        listed = "; ".join(f"{s.number or '-'} {s.description!r} ({s.uid})" for _, series, _ in found for s in series)
        raise AttnUNetError(f"no series with SeriesNumber or SeriesInstanceUID {pick}; found: {listed}", path)
    return cases


def _case_names(base: str, series: list[StudySeries], several: bool) -> list[str]:
    """``base`` for a folder's only series; ``<base>_s<number>_<description>`` for each of several,
    with the UID's last digits added where two would share a name."""
    if not several:
        return [base] * len(series)
    names = [_safe(f"{base}_s{s.number or 'x'}_{s.description[:NAME_LENGTH]}") for s in series]
    counts = Counter(names)
    return [f"{n}_{s.uid.rsplit('.', 1)[-1][-8:]}" if counts[n] > 1 else n for n, s in zip(names, series)]


def _safe(name: str) -> str:
    """A file-name safe form: letters (any script), digits, ``.``, ``-``; any other run becomes ``_``."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._")


def _distinct_positions(files: list[Path], headers: list[pydicom.Dataset]) -> int:
    """Distinct slice positions (to 0.1 mm) of a series' images; with geometry the reader will
    refuse in its own words, the number of images."""
    positions: set[tuple[float, ...]] = set()
    try:
        for f, h in zip(files, headers):
            positions.update(tuple(np.round(s.position, 1)) for s in slice_headers(f, h))
    except AttnUNetError:
        return sum(int(h.get("NumberOfFrames", 1) or 1) for h in headers)
    return len(positions)
