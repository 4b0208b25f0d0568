"""The config tree's own interpolations (``${attnunet.at_most:...}``, ``${attnunet.if:...}``).

Registered by :func:`attnunet.cli.common.config_dir` for every composition of the tree, and by
anything that loads a run's stored config on its own (the ablation report)."""

from __future__ import annotations

from omegaconf import OmegaConf


def _at_most(value: int, limit: int | None) -> int:
    """``min(value, limit)``; ``limit=None`` means no limit."""
    return value if limit is None else min(int(value), int(limit))


def _if(condition: bool, then: str, otherwise: str) -> str:
    """``then`` when ``condition`` holds, else ``otherwise`` (e.g. a folder-name suffix for a flag)."""
    return then if condition else otherwise


def register_resolvers() -> None:
    """Register the config tree's own interpolations (idempotent).

    ``at_most`` lets data.max_cases (a key every data config has) also shrink the synthetic set that
    is generated, so experiments never set a synthetic-only key; ``if`` names the organ-labelled
    phantom set's folder without renaming the default one.
    """
    OmegaConf.register_new_resolver("attnunet.at_most", _at_most, replace=True)
    OmegaConf.register_new_resolver("attnunet.if", _if, replace=True)
