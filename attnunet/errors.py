"""The one exception type users see as a clean one-line message."""

from __future__ import annotations

from pathlib import Path


class AttnUNetError(Exception):
    """A user-facing problem (bad input, bad setting) reported as ``<file>: <problem>``."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


def user_error(e: BaseException) -> AttnUNetError | None:
    """The :class:`AttnUNetError` behind ``e``, looking through wrappers (MONAI's Compose, loaders)."""
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        if isinstance(current, AttnUNetError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def as_user_error(e: BaseException, path: str | Path, what: str) -> AttnUNetError:
    """Our error behind ``e`` if there is one, else ``<path>: <what> (<root cause>)``."""
    ours = user_error(e)
    if ours is not None:
        return ours
    root = e
    while root.__cause__ is not None:
        root = root.__cause__
    detail = str(root).strip().splitlines()[0][:200] if str(root).strip() else ""
    return AttnUNetError(f"{what} ({type(root).__name__}{': ' + detail if detail else ''})", path)
