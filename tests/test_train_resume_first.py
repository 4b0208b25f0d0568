"""A resume path that does not exist is refused before any data work (no phantom set generated)."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnunet.cli.train import train
from attnunet.errors import AttnUNetError
from tests.helpers import compose_train


def test_a_missing_resume_checkpoint_is_refused_before_the_phantoms_are_generated(tmp_path: Path) -> None:
    root = tmp_path / "phantoms"
    missing = tmp_path / "nowhere.ckpt"
    cfg = compose_train(
        ["experiment=smoke", f"data.root={root}", f"ckpt_path={missing}", f"run_dir={tmp_path / 'run'}"]
    )
    with pytest.raises(AttnUNetError, match=rf"^{missing}: "):
        train(cfg)
    assert not root.exists()
