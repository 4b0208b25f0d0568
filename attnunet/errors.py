"""The one exception type users see as a clean one-line message."""

from __future__ import annotations

from pathlib import Path


class AttnUNetError(Exception):
    """A user-facing problem (bad input, bad setting) reported as ``<file>: <problem>``."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")
