"""Kills for real: pre-emption signals save a resumable checkpoint; a process killed in the middle of
writing a checkpoint or an output leaves the previous file, never a broken one."""

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
from tests.helpers import source_env, stored_as


def start_training(run_dir: Path, cache: Path, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "attnunet", "train", "experiment=smoke", f"hydra.run.dir={run_dir}", *extra]
    env = source_env(ATTNUNET_CACHE=str(cache))
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow
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


# Saves step 1, then step 2 with the process killed (SIGKILL: no clean-up runs) at a chosen moment.
KILLED_SAVE = """
import io, os, signal, sys
import torch
from attnunet.training.checkpoint_io import AtomicCheckpointIO

path, moment = sys.argv[1], sys.argv[2]
AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(1), "w": torch.zeros(4096)}, path)
real_save, real_fsync = torch.save, os.fsync

def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)

def half_then_die(obj, f):
    whole = io.BytesIO()
    real_save(obj, whole)
    f.write(whole.getvalue()[: len(whole.getvalue()) // 2])
    f.flush()
    die()

if moment == "mid-write":
    torch.save = half_then_die
else:  # every byte written, not yet flushed to disk nor renamed
    os.fsync = die
AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(2), "w": torch.ones(4096)}, path)
"""


@pytest.mark.parametrize("moment", ["mid-write", "before-rename"])
def test_a_process_killed_while_saving_leaves_the_previous_checkpoint(moment: str, tmp_path: Path) -> None:
    last = tmp_path / "last.ckpt"
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(last), moment], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert torch.load(last, weights_only=True)["step"] == 1
    (leftover,) = [p for p in tmp_path.iterdir() if p != last]  # the killed save's temporary file
    assert leftover.name.startswith(".last.ckpt.") and leftover.stat().st_size > 0
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(3)}, last)  # the next save clears it
    assert sorted(tmp_path.iterdir()) == [last] and torch.load(last, weights_only=True)["step"] == 3


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_same_seed_twice_gives_identical_metrics(smoke_run, tmp_path: Path) -> None:
    """A second run of the session's smoke training (same default seed) logs the same figures."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first, _, cache = smoke_run
    process = start_training(tmp_path / "again", cache, [])
    assert process.wait(timeout=300) == 0, process.stderr.read()[-2000:]
    values = []
    for run in (first, tmp_path / "again"):
        events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
        events.Reload()
        values.append([(e.step, e.value) for tag in ("val/dice", "train/loss_epoch") for e in events.Scalars(tag)])
    assert len(values[0]) == 4 and values[0] == values[1]  # 2 epochs: 2 validations, 2 epoch losses


# attnunet-infer killed (SIGKILL) once the second case's segmentation is written to its temporary
# file, just before the rename that marks the case finished.
KILLED_INFER = """
import os, signal, sys
from attnunet.__main__ import main

real_replace = os.replace

def replace(src, dst):
    if os.fspath(dst).endswith("ct_b_seg.nii.gz"):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)

os.replace = replace
sys.argv = ["attnunet", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_killed_folder_inference_leaves_only_whole_files_and_continues(
    checkpoint: Path, cropped_ct: Path, tmp_path: Path
) -> None:
    import nibabel as nib

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name, code in zip("abcd", ("RAS", "LPS", "SRA", "PIL")):
        stored_as(cropped_ct, code, inputs / f"ct_{name}.nii.gz")
    args = ["infer", f"ckpt_path={checkpoint}", f"input={inputs}", f"output_dir={out}"]
    args += ["save_attention=true", "save_probabilities=true"]
    killed = subprocess.run([sys.executable, "-c", KILLED_INFER, *args], cwd=tmp_path, capture_output=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert [p.name for p in out.glob("*_seg.nii.gz")] == ["ct_a_seg.nii.gz"]
    assert [p.name for p in out.glob(".ct_b_seg.nii.gz.*")]  # the interrupted write's temporary file
    for path in out.glob("ct_*.nii.gz"):  # every file with a final name is complete
        assert nib.load(path).get_fdata().size > 0
    result = subprocess.run(
        [sys.executable, "-m", "attnunet", *args, "continue=true"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 done, 1 already finished, 0 failed" in result.stdout
    assert len(list(out.glob("*_seg.nii.gz"))) == 4
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # interrupted temporaries removed


@pytest.mark.slow  # a Python process per umask (the mode is read once, at import)
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
