"""Kills for real: pre-emption signals save a resumable checkpoint; checkpoint writes are atomic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from attnunet.training.checkpoint_io import AtomicCheckpointIO

pytestmark = pytest.mark.slow


def start_training(run_dir: Path, cache: Path, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "attnunet", "train", "experiment=smoke", f"hydra.run.dir={run_dir}", *extra]
    env = {**os.environ, "ATTNUNET_CACHE": str(cache)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_saves_last_and_resume_continues(smoke_run, tmp_path: Path, signum: int) -> None:
    _, _, cache = smoke_run
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    process = start_training(run, cache, ["trainer.max_epochs=200"])
    wait_for(last, process)
    time.sleep(1.0)  # let it get into a later epoch
    process.send_signal(signum)
    assert process.wait(timeout=120) == 128 + signum
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] > 0

    resumed = start_training(run, cache, ["ckpt_path=last", f"trainer.max_epochs={saved['epoch'] + 2}"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    final = torch.load(last, map_location="cpu", weights_only=True)
    steps_per_epoch = 3  # smoke: 3 training volumes, one per step
    # No step lost or repeated: the resumed run ends exactly where an uninterrupted one would.
    assert final["global_step"] == steps_per_epoch * (saved["epoch"] + 2)


def test_sigkill_leaves_a_loadable_checkpoint(smoke_run, tmp_path: Path) -> None:
    _, _, cache = smoke_run
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    process = start_training(run, cache, ["trainer.max_epochs=200"])
    wait_for(last, process)
    for _ in range(10):  # kill at arbitrary moments, including during saves
        time.sleep(0.37)
        if process.poll() is not None:
            break
    process.kill()
    process.wait(timeout=60)
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] > 0
    # a temporary file from the killed save may remain; it is never mistaken for a checkpoint


def test_atomic_checkpoint_io_keeps_the_old_file_when_a_write_fails(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")  # fails half-way through the write

    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"step": torch.tensor(2), "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
