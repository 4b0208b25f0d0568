"""Build a network from the plain-data model config stored in configs and checkpoints.

Only names in :data:`MODELS` can be built: a checkpoint's config never names a class to import.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from attnunet.errors import AttnUNetError
from attnunet.models.attention_unet import AttentionUNet

MODELS: dict[str, type[nn.Module]] = {"attention_unet": AttentionUNet}
RUNTIME_KEYS = ("name",)


def build_model(config: dict[str, Any]) -> AttentionUNet:
    """``{'name': 'attention_unet', 'channels': [...], ...}`` -> network."""
    name = config.get("name", "attention_unet")
    if name not in MODELS:
        raise AttnUNetError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    kwargs = {k: v for k, v in config.items() if k not in RUNTIME_KEYS}
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:
        raise AttnUNetError(f"bad model settings: {e}") from None
