"""Read the next case while the current one is predicted."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from attnunet.inference.predictor import Predictor


def read_ahead(predictor: Predictor, paths: Sequence[Path]) -> Iterator[Future[dict[str, Any]]]:
    """One future of ``predictor.read(path)`` per path, in order. When a case is handed out, the
    next one starts reading in a thread of its own, so reading (decompression, resampling: mostly
    outside the GIL) overlaps the network and the writes of the case before. At most one read
    case waits, so memory grows by one input volume. A failed read raises from its future's
    ``result()``, for that case alone."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reader:
        upcoming = reader.submit(predictor.read, paths[0]) if paths else None
        for i in range(len(paths)):
            current = upcoming
            upcoming = reader.submit(predictor.read, paths[i + 1]) if i + 1 < len(paths) else None
            assert current is not None
            yield current
