"""Channel-wise argmax that is fast on CPU."""

from __future__ import annotations

import torch


def argmax_channels(scores: torch.Tensor, dim: int = 0, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Index of the largest score along ``dim`` (the first one on ties, as ``torch.argmax``).

    ``scores``: ``(..., K, ...)`` with the K class scores along ``dim``; returns the same shape
    without ``dim``, as ``dtype`` (int64 as torch's; ``torch.uint8`` for label maps that are
    written as uint8 anyway, an eighth of the memory of a full CT's int64 map). Written by hand
    because torch's CPU ``argmax`` over a short leading dimension is a slow strided reduction; K
    elementwise comparisons are an order of magnitude faster on a full CT
    (docs/explanation/inference-path.md#what-each-choice-buys-measured).
    """
    best = scores.select(dim, 0).clone()
    index = torch.zeros(best.shape, dtype=dtype, device=scores.device)
    for k in range(1, scores.shape[dim]):
        candidate = scores.select(dim, k)
        better = candidate > best
        index.masked_fill_(better, k)
        best = torch.maximum(best, candidate)
    return index
