"""What every command shares: the config folder (its interpolations registered), error reporting.

Process set-up (warnings, memory, torch settings) is :func:`attnunet.utils.process.prepare_process`,
which each command calls first."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig

from attnunet.config_resolvers import register_resolvers
from attnunet.errors import AttnUNetError, user_error

log = logging.getLogger("attnunet")


def config_dir() -> str:
    """Absolute path of the Hydra config tree.

    An installed wheel carries it as ``attnunet/configs``; a source checkout (editable install or
    tests run from the repository) has it at the repository's top level. The interpolations its
    files use are registered on the way (:func:`register_resolvers`).
    """
    register_resolvers()
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "configs", package.parent / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"attnunet configs not found next to {package}")


@contextmanager
def settings_of(group: str, *also: type[Exception]) -> Iterator[None]:
    """Errors raised while building objects from the ``group`` config (``model``, ``data``, ...) are
    bad settings: report them as ``error: <group>: <message>`` instead of a traceback.

    Only ``ValueError``/``TypeError`` (what constructors raise for a bad value or an unknown key),
    the library-specific kinds in ``also`` and Hydra's wrapper of them; anything else is a bug and
    keeps its traceback.
    """
    kinds = (ValueError, TypeError, *also)
    try:
        yield
    except (*kinds, InstantiationException) as e:
        if user_error(e) is not None:
            raise
        root: BaseException = e
        while root.__cause__ is not None:
            root = root.__cause__
        if not isinstance(root, kinds):
            raise
        raise AttnUNetError(str(root).strip().splitlines()[0], group) from e


def report_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn :class:`AttnUNetError` into ``error: <file>: <problem>`` and exit code 1.

    With ``debug=true`` the full traceback is shown instead.
    """

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except Exception as e:
            ours = user_error(e)
            if ours is None or cfg.get("debug", False):
                raise
            print(f"error: {ours}", file=sys.stderr)
            sys.exit(1)

    return wrapper


def exit_on_failures(failures: dict[str, str], kind: str) -> None:
    """Print ``<kind>: <case>: <why>`` per failure to stderr and exit 1; return when there are none."""
    if not failures:
        return
    for case, why in failures.items():
        print(f"{kind}: {case}: {why}", file=sys.stderr)
    sys.exit(1)
