"""Start-up set-up is one explicit call: importing attnunet changes nothing in the process."""

from __future__ import annotations

import subprocess
import sys

from attnunet.utils.process import KNOWN_HARMLESS_WARNINGS


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# Every module the commands import at start, and the library modules a user would import.
MODULES = (
    "attnunet.cli.common",
    "attnunet.cli.train",
    "attnunet.cli.evaluate",
    "attnunet.cli.infer",
    "attnunet.cli.synth",
    "attnunet.cli.check",
    "attnunet.cli.export",
    "attnunet.inference.predictor",
    "attnunet.training.module",
    "attnunet.utils.process",
)


def test_importing_any_command_or_library_module_changes_no_process_state() -> None:
    out = run_python(
        "import atexit, gc, warnings\n"
        f"for name in {MODULES!r}:\n"
        "    __import__(name)\n"
        "from attnunet.utils.process import KNOWN_HARMLESS_WARNINGS\n"
        "ours = [m for _, m in KNOWN_HARMLESS_WARNINGS for f in warnings.filters if f[1] and f[1].pattern == m]\n"
        "atexit._run_exitfuncs()\n"
        "print(len(ours), gc.isenabled(), gc.get_freeze_count())"
    )
    assert out == "0 True 0"


def test_prepare_process_installs_filters_and_skips_the_collection_at_exit_only() -> None:
    out = run_python(
        "import atexit, gc, warnings\n"
        "from attnunet.utils.process import prepare_process, KNOWN_HARMLESS_WARNINGS\n"
        "prepare_process()\n"
        "prepare_process()\n"  # idempotent: one filter per notice, one exit hook
        "patterns = [f[1].pattern for f in warnings.filters if f[1] is not None]\n"
        "print([patterns.count(m) for _, m in KNOWN_HARMLESS_WARNINGS], gc.isenabled())\n"
        "atexit._run_exitfuncs()\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 0)\n"
        "import sys; print('torch' in sys.modules)"
    )
    assert out.splitlines() == [f"{[1] * len(KNOWN_HARMLESS_WARNINGS)} True", "False True", "False"]


def test_the_performance_settings_reach_torch() -> None:
    out = run_python(
        "import torch\n"
        "from attnunet.utils.process import prepare_process\n"
        "prepare_process({'float32_matmul_precision': 'medium', 'cudnn_benchmark': False, 'malloc_tuning': False})\n"
        "print(torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark)\n"
        "prepare_process({})\n"
        "print(torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark)"
    )
    assert out.splitlines() == ["medium False", "high True"]


def test_the_configs_interpolations_come_with_the_config_tree() -> None:
    out = run_python(
        "from omegaconf import OmegaConf\n"
        "import attnunet.cli.common as common\n"
        "print(OmegaConf.has_resolver('attnunet.at_most'))\n"
        "common.config_dir()\n"
        "print(OmegaConf.has_resolver('attnunet.at_most'), OmegaConf.has_resolver('attnunet.if'))"
    )
    assert out.splitlines() == ["False", "True True"]
