"""Caching preprocessed volumes: in memory, on disk (persistent across runs) or not at all.

The disk cache lives in ``<cache_dir>/<key>/``, where ``key`` hashes everything that shapes a
cached volume (preprocessing spec, label merge, the deterministic sampling settings, the MONAI
version and this module's format). Changing any of them therefore starts a fresh folder; a stale
cache is never read. Within a folder, each case's file is named by a hash of its input files'
paths, sizes and modification times, so an edited or replaced scan is preprocessed again.
Files are read with ``torch.load(weights_only=True)`` (MONAI's default): a cache file cannot run code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import monai
from monai.data import CacheDataset, Dataset, PersistentDataset

from attnunet.errors import AttnUNetError
from attnunet.utils.folders import writable_folder

CACHE_MODES = ("memory", "disk", "none")
CACHE_FORMAT = 1


def cache_key(settings: dict[str, Any]) -> str:
    """Short stable hash of ``settings`` (JSON-serialisable) plus the MONAI version and cache format."""
    payload = {"settings": settings, "monai": monai.__version__, "format": CACHE_FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_signature(item: dict[str, Any]) -> bytes:
    """``hash_func`` for :class:`PersistentDataset`: hex digest of the case's input files (path,
    size, mtime; every file of a DICOM folder). ``PersistentDataset`` wants ASCII bytes."""
    h = hashlib.sha256()
    for key in sorted(k for k, v in item.items() if isinstance(v, str)):
        path = Path(item[key])
        h.update(f"{key}={item[key]}".encode())
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for f in files:
            try:
                st = f.stat()
            except OSError:  # missing file: the loader will name it
                continue
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest().encode()


def cached_dataset(
    cases: Sequence[dict[str, Any]],
    transform: Callable[[Any], Any],
    mode: str,
    cache_rate: float = 1.0,
    cache_dir: Path | None = None,
    num_workers: int = 1,
) -> Dataset:
    """A MONAI dataset that caches the deterministic head of ``transform`` as ``mode`` says.

    ``memory``: :class:`CacheDataset` of ``cache_rate`` of the cases, filled up front;
    ``disk``: :class:`PersistentDataset` in ``cache_dir`` (a key folder from :func:`cache_key`),
    filled on first use and reused by later epochs and runs; ``none``: preprocess at every access.
    """
    if mode not in CACHE_MODES:
        raise AttnUNetError(f"data.cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")
    cases = list(cases)
    if mode == "memory" and cache_rate > 0:
        return CacheDataset(cases, transform, cache_rate=cache_rate, num_workers=num_workers)
    if mode == "disk":
        if cache_dir is None:
            raise AttnUNetError("data.cache=disk needs data.cache_dir")
        writable_folder(cache_dir, "the cache folder")
        return PersistentDataset(cases, transform, cache_dir=cache_dir, hash_func=file_signature)
    return Dataset(cases, transform)
