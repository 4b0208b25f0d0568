"""What every command shares: the config folder, error reporting, runtime tuning."""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from attnunet.errors import AttnUNetError, user_error
from attnunet.utils.allocator import keep_freed_memory
from attnunet.utils.quiet import silence_known_dependency_noise

log = logging.getLogger("attnunet")


def _at_most(value: int, limit: int | None) -> int:
    """``min(value, limit)``; ``limit=None`` means no limit."""
    return value if limit is None else min(int(value), int(limit))


def _if(condition: bool, then: str, otherwise: str) -> str:
    """``then`` when ``condition`` holds, else ``otherwise`` (e.g. a folder-name suffix for a flag)."""
    return then if condition else otherwise


# Config interpolations of our own, registered wherever a config is composed (every entry point and
# the tests import this module). ``at_most`` lets data.max_cases (a key every data config has) also
# shrink the synthetic set that is generated, so experiments never set a synthetic-only key; ``if``
# names the organ-labelled phantom set's folder without renaming the default one.
OmegaConf.register_new_resolver("attnunet.at_most", _at_most, replace=True)
OmegaConf.register_new_resolver("attnunet.if", _if, replace=True)
silence_known_dependency_noise()  # every command imports this module before it does any work


def _skip_the_final_garbage_collection() -> None:
    """At exit Python collects garbage once more over every object torch and MONAI created, a
    noticeable share of a one-CT ``attnunet-infer`` run, to free memory the ending process gives back
    anyway (docs/results.md#what-each-choice-on-the-inference-path-buys).
    Freezing hides those objects from the collector; reference-counted clean-up (open files,
    logging's flush, ``weakref.finalize``) still runs. Registered at exit only, so a process that
    goes on (a test run) keeps its collector."""
    gc.disable()
    gc.freeze()


atexit.register(_skip_the_final_garbage_collection)


def config_dir() -> str:
    """Absolute path of the Hydra config tree.

    An installed wheel carries it as ``attnunet/configs``; a source checkout (editable install or
    tests run from the repository) has it at the repository's top level.
    """
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


def tune_runtime(performance: DictConfig) -> None:
    """Process-wide speed settings (measured effect: docs/results.md#speed-against-monais-attentionunet)."""
    import torch  # noqa: PLC0415 - importing a command's module stays quick (attnunet-infer imports torch late)

    if performance.get("malloc_tuning", True):
        keep_freed_memory()
    torch.set_float32_matmul_precision(performance.get("float32_matmul_precision", "high"))
    torch.backends.cudnn.benchmark = bool(performance.get("cudnn_benchmark", True))


def exit_on_failures(failures: dict[str, str], kind: str) -> None:
    """Print ``<kind>: <case>: <why>`` per failure to stderr and exit 1; return when there are none."""
    if not failures:
        return
    for case, why in failures.items():
        print(f"{kind}: {case}: {why}", file=sys.stderr)
    sys.exit(1)
