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
    # a temporary file from the killed save may remain (removed at the next save of that checkpoint)


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


def test_next_save_removes_the_leftover_of_a_killed_save(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    leftover = tmp_path / ".last.ckpt.k1ll3d.tmp"  # what atomic_target names its temporary file
    leftover.write_bytes(b"half a checkpoint")
    other = tmp_path / ".best.ckpt.k1ll3d.tmp"  # another checkpoint's temporary: not this save's business
    other.write_bytes(b"x")
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(3)}, path)
    assert torch.load(path, weights_only=True)["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.ckpt.k1ll3d.tmp", "last.ckpt"]


def test_mid_epoch_checkpoints_every_n_steps(smoke_run, tmp_path: Path) -> None:
    _, _, cache = smoke_run
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    process = start_training(run, cache, ["callbacks.periodic_last.every_n_train_steps=1", "trainer.max_epochs=200"])
    steps_seen = set()
    try:
        wait_for(last, process)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(s % 3 for s in steps_seen):
            steps_seen.add(torch.load(last, map_location="cpu", weights_only=True)["global_step"])
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait(timeout=60)
    assert any(s % 3 for s in steps_seen), steps_seen  # 3 steps per epoch: some saves were mid-epoch


def test_same_seed_twice_gives_identical_metrics(smoke_run, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, cache = smoke_run
    values = []
    for name in ("a", "b"):
        process = start_training(tmp_path / name, cache, ["seed=7"])
        assert process.wait(timeout=300) == 0, process.stderr.read()[-2000:]
        events = EventAccumulator(str(tmp_path / name / "tensorboard"), size_guidance={"scalars": 0})
        events.Reload()
        values.append([(e.step, e.value) for tag in ("val/dice", "train/loss_epoch") for e in events.Scalars(tag)])
    assert values[0] == values[1]


def test_killed_folder_inference_leaves_only_whole_files_and_continues(tmp_path: Path) -> None:
    import nibabel as nib

    from tests.test_inference import CT, make_checkpoint, stored_as

    ckpt = make_checkpoint(tmp_path / "m.ckpt", {0: "background", 1: "pancreas"})
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for code in ("RAS", "LPS", "SRA", "PIL"):
        stored_as(CT, code, inputs / f"ct_{code}.nii.gz")
    cmd = [
        sys.executable,
        "-m",
        "attnunet",
        "infer",
        f"ckpt_path={ckpt}",
        f"input={inputs}",
        f"output_dir={out}",
        "save_attention=true",
        "save_probabilities=true",
    ]
    process = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(out.glob("*_seg.nii.gz")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # somewhere inside the next case, possibly mid-write
    process.kill()
    process.wait(timeout=60)
    finished = sorted(out.glob("*_seg.nii.gz"))
    assert 1 <= len(finished) < 4
    for path in out.glob("*.nii.gz"):  # every file with a final name is complete
        if not path.name.startswith("."):  # ".<name>.<random>.nii.gz": the interrupted temporary file
            assert nib.load(path).get_fdata().size > 0
    result = subprocess.run([*cmd, "continue=true"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(finished)} already finished" in result.stdout
    assert len(list(out.glob("*_seg.nii.gz"))) == 4
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # interrupted temporaries removed


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_get_the_umask_mode(tmp_path: Path, umask: int, mode: int) -> None:
    """Outputs, metrics and checkpoints are written through a 0600 temporary file; the finished file
    must have the mode the user's umask gives new files (a group can read them on a shared cluster)."""
    script = (
        "import sys, numpy as np, nibabel as nib, torch\n"
        "from pathlib import Path\n"
        "from attnunet.inference.io import save_like\n"
        "from attnunet.evaluation.metrics import METRICS\n"
        "from attnunet.evaluation.report import write_report\n"
        "from attnunet.training.checkpoint_io import AtomicCheckpointIO\n"
        "out = Path(sys.argv[1])\n"
        "ref = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4))\n"
        "save_like(np.zeros((2, 2, 2), np.uint8), ref, out / 'a_seg.nii.gz', set())\n"
        "write_report([{'case': 'a', 'label': 'pancreas', **dict.fromkeys(METRICS, 1.0)}], out)\n"
        "AtomicCheckpointIO().save_checkpoint({'w': torch.zeros(1)}, out / 'last.ckpt')\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], check=True, preexec_fn=lambda: os.umask(umask), timeout=120
    )
    written = sorted(tmp_path.iterdir())
    assert [p.name for p in written] == ["a_seg.nii.gz", "last.ckpt", "metrics.csv", "summary.json"]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(mode) for p in written}
