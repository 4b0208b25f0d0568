"""The suites test this source tree: the processes they start import the same ``attnunet`` as the
tests themselves, whatever copy is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attnunet
from tests.helpers import ROOT, source_env


def test_started_processes_import_attnunet_from_this_source_tree(tmp_path: Path) -> None:
    assert Path(attnunet.__file__).resolve() == ROOT / "attnunet" / "__init__.py"
    code = "import attnunet; print(attnunet.__file__)"
    for env in (None, source_env()):  # as the session fixture sets it, and as helpers.run_cli passes it
        child = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert child.returncode == 0, child.stderr
        assert Path(child.stdout.strip()).resolve() == Path(attnunet.__file__).resolve()
