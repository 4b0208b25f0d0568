"""The dataset audit with its per-case results kept on disk, so that ``attnunet-train`` audits a
dataset it has seen before in seconds.

A case's file is named by a hash of its input files (path, size, modification time: the same
signature as the preprocessing cache, :func:`attnunet.data.cache.file_signature`), the label map
and :data:`AUDIT_FORMAT`; an edited file or a changed audit is therefore measured again. Files are
``.npz`` read with ``allow_pickle=False``: a cache file cannot run code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from attnunet.data.cache import file_signature
from attnunet.data.datalist import Case
from attnunet.data.dataset_audit import CaseAudit, audit_case, audit_findings
from attnunet.data.duplicates import ScanSignature
from attnunet.data.findings import ERROR, Finding
from attnunet.data.fingerprint import load_pairs
from attnunet.errors import AttnUNetError
from attnunet.utils.atomic import atomic_target

AUDIT_FORMAT = 1


def cache_path(cache_dir: Path, case: Case, names: Mapping[int, str]) -> Path:
    """Where ``case``'s audit is kept in ``cache_dir``."""
    files = {k: case[k] for k in ("image", "label")}
    h = hashlib.sha256(file_signature(files))
    h.update(json.dumps({"labels": {str(k): v for k, v in names.items()}, "format": AUDIT_FORMAT}).encode())
    return cache_dir / f"{h.hexdigest()[:32]}.npz"


def save(path: Path, audit: CaseAudit) -> None:
    """Write ``audit`` to ``path`` atomically (a reader never sees half a file)."""
    record = json.dumps({"placements": audit.placements, "labels": audit.labels})
    sig = audit.signature
    with atomic_target(path, suffix=".npz") as tmp:
        # Block means in float16: 0.5 HU steps at 1000 HU, far below what tells scans apart.
        np.savez(
            tmp, record=np.array(record), shape=sig.shape, spacing=sig.spacing, slices=sig.slices.astype(np.float16)
        )


def load(path: Path) -> CaseAudit | None:
    """The audit kept at ``path``; None when there is none or it cannot be read (it is measured again)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            record = json.loads(str(f["record"]))
            sig = ScanSignature(f["shape"], f["spacing"], f["slices"].astype(np.float32))
    except (OSError, ValueError, KeyError):
        return None
    return CaseAudit(record["placements"], record["labels"], sig)


def audit_dataset(cases: list[Case], names: Mapping[int, str], cache_dir: Path | None) -> list[Finding]:
    """Audit a dataset's cases, each measured once and kept in ``cache_dir`` (None: not kept);
    the findings as :func:`audit_findings` gives them, unreadable cases among them as errors."""
    audits: dict[str, CaseAudit] = {}
    todo = []
    for case in cases:
        cached = load(cache_path(cache_dir, case, names)) if cache_dir else None
        if cached is None:
            todo.append(case)
        else:
            audits[case["case_id"]] = cached
    unreadable = []
    for case, (case_id, loaded) in zip(todo, load_pairs(todo, len(names))):
        if isinstance(loaded, AttnUNetError):
            unreadable.append(Finding(case_id, ERROR, "unreadable", str(loaded)))
            continue
        audits[case_id] = audit_case(loaded, names)
        if cache_dir is not None:
            save(cache_path(cache_dir, case, names), audits[case_id])
    return sorted(unreadable + audit_findings(audits, names), key=Finding.order)
