"""Write files so that a kill at any moment leaves either the old file or the whole new one."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _process_umask() -> int:
    """The process umask (reading it means setting it; done once, at import, before any threads)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only (0600); a finished file gets the mode any new
# file of this process would have, so a group on a shared cluster can read outputs and checkpoints.
NEW_FILE_MODE = 0o666 & ~_process_umask()


def remove_leftovers(path: Path, suffix: str = ".tmp") -> None:
    """Delete temporary files that :func:`atomic_target` left beside ``path`` when its writer was
    killed mid-write. Only for targets that a single process writes (another writer's live
    temporary file would go too)."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*{glob.escape(suffix)}"):
        leftover.unlink(missing_ok=True)


@contextmanager
def atomic_target(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (named ``.<name>.<random><suffix>``) to write to.

    On leaving the block without an error the temporary file gets the umask's mode for new files and
    replaces ``path`` with one atomic ``os.replace``; on any error it is deleted and the error
    propagates. ``suffix`` lets writers that pick the format from the name (``.nii.gz``, ``.png``)
    see the right extension.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, NEW_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_target`: readers see the old or the whole new file."""
    with atomic_target(path) as tmp:
        tmp.write_text(text)
