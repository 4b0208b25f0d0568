"""Read the next case while the current one is predicted (when the network is not on the CPU)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from attnunet.inference.predictor import Predictor


def read_ahead(predictor: Predictor, paths: Sequence[Path]) -> Iterator[Callable[[], dict[str, Any]]]:
    """Per path, in order, a call that returns ``predictor.read(path)`` (or raises its error, for
    that case alone), so the caller times and guards the read with the rest of the case.

    When the network runs on an accelerator, the CPU is mostly idle meanwhile: whenever a case is
    handed out, the next one starts reading in a thread of its own, so reading (decompression,
    resampling) overlaps the network and the writes of the case before; at most one read case
    waits. When the network runs on the CPU it already keeps every core busy, so each case is read
    when its call is made: a reading thread then gains no time and costs memory
    (docs/explanation/inference-path.md#what-each-choice-buys-measured).
    """
    if predictor.device.type == "cpu":
        for path in paths:
            yield partial(predictor.read, path)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reader:
        upcoming: Future[dict[str, Any]] | None = None
        for i, path in enumerate(paths):
            current = partial(predictor.read, path) if upcoming is None else upcoming.result
            upcoming = reader.submit(predictor.read, paths[i + 1]) if i + 1 < len(paths) else None
            yield current
