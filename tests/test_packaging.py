"""What cannot run here (Docker, CI on a clean clone) is at least consistent with the repository."""

from __future__ import annotations

import re

import pytest
from hydra import compose, initialize_config_dir

from attnunet.cli.common import config_dir
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
pytestmark = pytest.mark.skipif(not (ROOT / "Dockerfile").exists(), reason="needs the source tree")


def console_scripts() -> set[str]:
    """The command names ``pyproject.toml`` installs (tomllib is in the standard library from Python
    3.11; on 3.10, which ``requires-python`` allows, tomli is the same parser)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def test_dockerfile_copies_existing_files_and_runs_real_commands() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [src for line in re.findall(r"^COPY (.+)$", dockerfile, re.M) for src in line.split()[:-1]]
    assert copied and all((ROOT / src).exists() for src in copied), copied
    assert "USER attnunet" in dockerfile and re.search(r"^FROM \S+:\S+", dockerfile, re.M)  # pinned base, non-root
    for command in re.findall(r"docker run [^\n]*? attnunet (attnunet-\w+)", README):
        assert command in console_scripts()
    assert "docker build -t attnunet ." in README


def test_ci_runs_the_readme_test_command_and_both_suites() -> None:
    block = re.search(r"Set up and run the tests.*?```bash\n(.+?)\n```", README, re.S)
    assert block, "README lost its test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert block.group(1).strip() in ci
    assert "torch==2.13.0" in block.group(1)
    # plain pytest runs the quick suite only (pyproject's addopts); the slow one must be asked for
    assert re.search(r"\.venv/bin/pytest && \.venv/bin/pytest -m slow$", ci, re.M), ci


def test_readme_commands_exist() -> None:
    used = set(re.findall(r"\b(attnunet-\w+)", README))
    assert used <= console_scripts(), used - console_scripts()


def test_slurm_launcher_config_composes_without_submitting() -> None:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node == 4 and launcher.nodes == 2
    assert launcher.max_num_timeout > 0
