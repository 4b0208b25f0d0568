"""Creating folders the program writes into, with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

from attnunet.errors import AttnUNetError


def writable_folder(path: str | Path, name: str) -> Path:
    """Create ``path`` (and parents) if needed; a clear error naming ``name`` when it is a file,
    cannot be created or cannot be written."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise AttnUNetError(f"{name} exists and is not a folder", folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AttnUNetError(f"cannot create {name} ({e.strerror})", folder) from None
    if not os.access(folder, os.W_OK):
        raise AttnUNetError(f"{name} is not writable", folder)
    return folder
