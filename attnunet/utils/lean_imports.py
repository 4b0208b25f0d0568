"""MONAI imported without the optional packages it loads for features attnunet never uses."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Modules MONAI's package import loads only for features attnunet does not use: matplotlib.pyplot
# (Jupyter engine plots, matshow3d, the learning-rate finder's plot) and scipy.signal, which pulls
# in scipy.stats (ultrasound confidence maps, 1D signal transforms): together about half of MONAI's
# import (docs/explanation/inference-path.md#what-each-choice-buys-measured).
# Pictures attnunet draws import matplotlib itself, after MONAI.
UNUSED_BY_ATTNUNET = ("matplotlib", "scipy.signal")


@contextmanager
def unimportable(names: tuple[str, ...]) -> Iterator[None]:
    """Within the block, ``import`` of any of ``names`` (and their submodules) that is not imported
    yet raises ImportError; afterwards they import normally again."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment] - Python's marker for "import fails"
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


def import_monai() -> None:
    """Import MONAI for a command-line run, without the extras above (much sooner than ``import monai``).

    MONAI's package import executes every submodule, and with them these optional imports. MONAI
    wraps each in ``optional_import``, so when one fails it keeps a stub that raises
    ``OptionalImportError`` only if that feature is used. Written by hand because MONAI has no
    switch for a lazy import. Only for the commands' own processes (a library user's MONAI stays
    whole); does nothing when MONAI is already imported.
    """
    if "monai" in sys.modules:
        return
    with unimportable(UNUSED_BY_ATTNUNET):
        import monai  # noqa: F401, PLC0415 - the point of this function
