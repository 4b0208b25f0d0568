"""Paired differences between two model variants trained with the same seeds on the same split.

A difference between variants is only worth reporting when it exceeds what another seed or other
cases would give. Both sources vary here: a seed changes the whole run, a case is one draw of
anatomy. The interval therefore comes from a two-level bootstrap that redraws the seeds and the
cases (with replacement) of the ``(seeds, cases)`` table of per-case differences, so one lucky
seed or one easy case cannot make a difference look resolved. NumPy has no such routine and SciPy's
``bootstrap`` resamples one axis only, hence this small one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``variant - reference`` over seeds and cases, and its ``level`` confidence interval."""

    mean: float
    low: float
    high: float
    level: float

    @property
    def resolved(self) -> bool:
        """Whether the interval excludes zero."""
        return bool(self.low > 0 or self.high < 0)

    def text(self, digits: int = 3) -> str:
        """``+0.014 [-0.006, +0.031]``"""
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired_difference(
    differences: np.ndarray, level: float = 0.95, draws: int = 10_000, seed: int = 0
) -> PairedDifference:
    """Bootstrap interval of the mean of ``differences`` ``(seeds, cases)``, one value per seed and
    case (NaN where a metric is undefined, e.g. HD95 of an empty prediction: left out of means).
    Seeds and cases are redrawn independently in every draw; the interval is the percentile one.
    Fixed ``seed``: the same table always gives the same interval."""
    table = np.asarray(differences, dtype=float)
    if table.ndim != 2 or not np.isfinite(table).any():
        nan = float("nan")
        return PairedDifference(nan, nan, nan, level)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, table.shape[0], size=(draws, table.shape[0]))
    cases = rng.integers(0, table.shape[1], size=(draws, table.shape[1]))
    resampled = table[seeds[:, :, None], cases[:, None, :]].reshape(draws, -1)  # (draws, seeds * cases)
    defined = np.isfinite(resampled)
    counts = defined.sum(axis=1)
    means = np.where(defined, resampled, 0.0).sum(axis=1)[counts > 0] / counts[counts > 0]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedDifference(float(table[np.isfinite(table)].mean()), float(low), float(high), level)
