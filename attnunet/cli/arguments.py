"""The command line as users type it, turned into overrides that Hydra reads as they were meant.

Hydra's override grammar reads an unquoted value as a number, list, sweep or string, and stops at
characters outside its small alphabet (non-ASCII letters, ``=``, ``~``, ``#``, brackets inside a
word). File names carry all of these, so before Hydra parses ``sys.argv``:

* the value of a path key (:data:`PATH_KEYS`: ``input=``, ``output_dir=``, ``ckpt_path=``,
  ``data.root=``, ``hydra.run.dir=``, ...) is quoted when it names an existing file or folder, when
  Hydra cannot parse it, when Hydra would read it as a number or a boolean, or (outside ``-m``
  sweeps) as a sweep over comma-separated values; each item of a ``[a,b]`` list is treated alike.
  ``null``, lists and ``${...}`` interpolations keep their meaning;
* ``trainer.<arg>=`` for any argument of ``pytorch_lightning.Trainer`` becomes ``++trainer.<arg>=``
  (set when the trainer config lists it, added when it does not); an unknown name is refused,
  naming the nearest valid ones;
* any other value Hydra cannot parse is a one-line error that shows the quoted form that works.

Rewriting is idempotent (a quoted value and a ``++`` key are left as they are), so Lightning's DDP
launcher, which starts its workers with the rewritten ``sys.argv``, gets the same overrides again.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from attnunet.errors import AttnUNetError

# Last key segments whose values are file or folder paths, in any command's config.
PATH_KEYS = frozenset(
    {
        "input",
        "output",
        "output_dir",
        "ckpt_path",
        "ckpt_dir",
        "model_file",
        "pred_dir",
        "label_dir",
        "image_dir",
        "init_weights",
        "run_dir",
        "root",
        "dataset_json",
        "splits_file",
        "cache_dir",
        "dir",
        "default_root_dir",
        "dirpath",
    }
)
TRAINER_NODE = "trainer."
MULTIRUN_FLAGS = ("-m", "--multirun", "hydra.mode=MULTIRUN")
OVERRIDE = re.compile(r"(?P<prefix>\+{0,2}|~)(?P<key>[A-Za-z_][\w./@:-]*)=(?P<value>.*)", re.DOTALL)


def prepare_arguments(arguments: Sequence[str], *, trainer_arguments: bool = False) -> list[str]:
    """``arguments`` (``sys.argv[1:]``) with path values quoted and, when ``trainer_arguments``,
    Trainer arguments in Hydra's ``++`` form; raises :class:`AttnUNetError` naming the key for a
    value Hydra cannot parse or an unknown Trainer argument."""
    multirun = any(a in MULTIRUN_FLAGS for a in arguments)
    return [_prepare(a, multirun=multirun, trainer_arguments=trainer_arguments) for a in arguments]


def hydra_command_line(*, trainer_arguments: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a ``@hydra.main`` entry point: rewrites ``sys.argv`` with
    :func:`prepare_arguments` before Hydra reads it; a refused argument prints
    ``error: <key>: <problem>`` and exits 1, as every other bad setting does."""

    def decorate(main: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(main)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                sys.argv[1:] = prepare_arguments(sys.argv[1:], trainer_arguments=trainer_arguments)
            except AttnUNetError as e:
                print(f"error: {e}", file=sys.stderr)
                sys.exit(1)
            return main(*args, **kwargs)

        return wrapper

    return decorate


def hydra_quoted(text: str) -> str:
    """``text`` as a single-quoted Hydra string that reads back as exactly ``text``.

    Hydra unescapes a backslash only before a quote or before the closing quote, so runs of
    backslashes there are doubled and the quotes themselves escaped.
    """
    escaped = re.sub(r"(\\+)(?='|$)", r"\1\1", text)
    return "'" + escaped.replace("'", "\\'") + "'"


@functools.cache
def trainer_argument_names() -> tuple[str, ...]:
    """Keyword arguments of ``pytorch_lightning.Trainer`` (imported on first use: it is slow)."""
    import pytorch_lightning as pl  # noqa: PLC0415 - only commands given a trainer.<arg> pay for it

    parameters = inspect.signature(pl.Trainer.__init__).parameters.values()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in parameters if p.name != "self" and p.kind in named)


def _prepare(argument: str, *, multirun: bool, trainer_arguments: bool) -> str:
    match = OVERRIDE.fullmatch(argument)
    if match is None:
        return argument  # a flag (-m, --cfg job, ...) or a deletion without a value
    prefix, key, value = match.group("prefix", "key", "value")
    if key.rsplit(".", 1)[-1] in PATH_KEYS:
        value = _path_value(value, multirun=multirun)
    if trainer_arguments and prefix == "" and key.startswith(TRAINER_NODE):
        prefix = _trainer_prefix(key)
    prepared = f"{prefix}{key}={value}"
    try:
        _parser().parse_override(prepared)
    except HydraException as e:
        reason = str(e).strip().splitlines()[0]
        quoted = _shell_form(f"{prefix}{key}={hydra_quoted(value)}")
        problem = f"Hydra cannot parse the value {value!r} ({reason}); as text it is written {quoted}"
        raise AttnUNetError(problem, key) from None
    return prepared


def _path_value(value: str, *, multirun: bool) -> str:
    """``value`` of a path key, quoted unless Hydra reads it as meant (see the module docstring)."""
    if _is_quoted(value) or _read_as_meant(value, multirun=multirun):
        return value
    if value.startswith("[") and value.endswith("]") and not _names_a_path(value):
        items = value[1:-1].split(",")
        return "[" + ",".join(_path_value(item.strip(), multirun=True) for item in items) + "]"
    return hydra_quoted(value)


def _read_as_meant(value: str, *, multirun: bool) -> bool:
    """Whether Hydra reads unquoted ``value`` as the same text, ``null``, a list, or (under ``-m``)
    a sweep, and ``value`` is no existing path (which always means itself)."""
    if _names_a_path(value):
        return False
    try:
        parsed = _parser().parse_override(f"key={value}")
    except HydraException:
        return False
    if parsed.is_sweep_override():
        return multirun
    read = parsed.value()
    return read is None or isinstance(read, list) or read == value


def _trainer_prefix(key: str) -> str:
    """``++`` for a Trainer argument (set or add); nested keys and ``_target_`` keep Hydra's rules."""
    name = key[len(TRAINER_NODE) :]
    if "." in name or name.startswith("_"):
        return ""
    valid = trainer_argument_names()
    if name in valid:
        return "++"
    nearest = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(nearest)}?" if nearest else f"valid: {', '.join(sorted(valid))}"
    raise AttnUNetError(f"not an argument of Lightning's Trainer; {hint}", key)


def _names_a_path(value: str) -> bool:
    if not value:
        return False
    path = Path(value)
    try:
        return path.exists() or path.expanduser().exists()
    except (OSError, RuntimeError, ValueError):  # too long a name, "~user" of no such user, a NUL
        return False


def _is_quoted(value: str) -> bool:
    return len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""


def _shell_form(argument: str) -> str:
    """``argument`` as typed in a POSIX shell: in double quotes when that keeps it intact."""
    return f'"{argument}"' if not set(argument) & set('"$`\\!') else shlex.quote(argument)


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()
