"""One place for dependency notices that are harmless for attnunet's users, silenced by every command.

Each entry names what it hides and why it is safe; anything else still shows. (Filtering here rather
than per call site: these come from inside MONAI and Lightning, not from calls attnunet makes.)
"""

from __future__ import annotations

import logging
import warnings

# (category, message regex): dependency warnings with nothing for the user to do.
KNOWN_HARMLESS_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # MONAI probes an optional GPU DICOM decoder at reader construction; pydicom's decoders are used.
    (UserWarning, r"NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register"),
    # MONAI's own surface metrics pass an argument it deprecated itself (monai.metrics.utils).
    (FutureWarning, r".*get_mask_edges:always_return_as_numpy"),
    # Lightning's pytree helper calls a torch API that torch deprecated; nothing changes for users.
    (Warning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)
# Loggers that announce the same optional decoder at WARNING level.
KNOWN_HARMLESS_LOGGERS = ("monai.data.nvimgcodec_pydicom_plugin",)


def silence_known_dependency_noise() -> None:
    """Install the filters above (idempotent)."""
    for category, message in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in KNOWN_HARMLESS_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
