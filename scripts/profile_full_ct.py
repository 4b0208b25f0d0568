"""Where the time of one ``attnunet-infer`` run on a full-size CT goes, stage by stage.

    python scripts/profile_full_ct.py                       # 512 x 512 x 240 CT of benchmark_full_ct.py
    python scripts/profile_full_ct.py --ckpt best.ckpt --image ct.nii.gz --extra save_attention=true

Runs the real command once under cProfile (after one unprofiled run that warms the file cache) and
sums the profile into stages: start-up (imports, config, checkpoint and model), read (decompress and
load the file), preprocess (reorient, resample, crop, window), network (sliding window), back to the
input grid, argmax, post-processing (largest component), write, and the rest. cProfile adds a
little to Python-heavy stages; the stage shares, not the absolute times, are the point: they show
the next thing to make faster.
"""

from __future__ import annotations

import argparse
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark_full_ct import make_checkpoint, make_full_ct

# Stage -> (file suffix, function name) whose cumulative times add up to it.
STAGES: dict[str, list[tuple[str, str]]] = {
    "read": [("monai/transforms/io/dictionary.py", "__call__")],
    "network": [("attnunet/inference/predictor.py", "_probabilities")],
    "back to the input grid": [
        ("attnunet/inference/predictor.py", "_to_input_grid"),
        ("attnunet/inference/predictor.py", "_maps_to_input_grid"),
    ],
    "argmax": [("attnunet/utils/channels.py", "argmax_channels")],
    "post-processing": [("attnunet/inference/postprocessing.py", "keep_largest_component")],
    "write": [("attnunet/inference/runner.py", "write_prediction")],
}
READ_AND_PREPROCESS = ("attnunet/inference/predictor.py", "read")
ALL_CASES = ("attnunet/inference/runner.py", "predict_cases")
ENTRY_IMPORT = ("attnunet/cli/infer.py", "<module>")


def cumulative(stats: pstats.Stats, where: tuple[str, str]) -> float:
    """Cumulative seconds of every function named ``where[1]`` in a file ending in ``where[0]``."""
    suffix, name = where
    return sum(
        row[3]
        for (file, _, func), row in stats.stats.items()
        if file.endswith(suffix) and func == name  # type: ignore[attr-defined]
    )


def profile_run(cmd: list[str], out: Path) -> tuple[float, pstats.Stats]:
    """Wall seconds of ``python -m cProfile -o out <cmd>`` and its statistics."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), *cmd], check=True, capture_output=True)
    return time.perf_counter() - start, pstats.Stats(str(out))


def import_seconds(module: str, repeats: int = 3) -> float:
    """Median wall seconds to import ``module`` in a fresh interpreter, beyond the interpreter's own
    start (no profiler: cProfile inflates imports, which are many small Python calls)."""

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    bare = sorted(run("pass") for _ in range(repeats))[repeats // 2]
    return sorted(run(f"import {module}") for _ in range(repeats))[repeats // 2] - bare


def stage_table(wall: float, stats: pstats.Stats) -> dict[str, float]:
    """Seconds per stage: "imports" of the entry point, "config and model" the rest of the start-up
    before the first case, "rest" what no stage names."""
    total = cumulative(stats, ("<string>", "<module>")) or max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    cases = cumulative(stats, ALL_CASES)
    imports = cumulative(stats, ENTRY_IMPORT)
    stages = {"imports": imports, "config and model": total - cases - imports}
    stages |= {name: sum(cumulative(stats, w) for w in where) for name, where in STAGES.items()}
    stages["preprocess"] = cumulative(stats, READ_AND_PREPROCESS) - stages["read"]
    stages["rest"] = total - sum(stages.values())
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="default: the default model with random weights")
    parser.add_argument("--image", type=Path, default=None, help="default: the 512x512x240 CT of benchmark_full_ct")
    parser.add_argument("--extra", nargs="*", default=[], help="more attnunet-infer overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = args.image or make_full_ct(folder / "full_ct.nii.gz")
        ckpt = args.ckpt or make_checkpoint(folder / "default.ckpt")
        cmd = ["-m", "attnunet", "infer", f"ckpt_path={ckpt}", f"input={image}", *args.extra]
        cmd += [f"hydra.run.dir={folder / 'hydra'}"]
        subprocess.run([sys.executable, *cmd, f"output_dir={folder / 'warm'}"], check=True, capture_output=True)
        wall, stats = profile_run([*cmd, f"output_dir={folder / 'out'}"], folder / "profile.out")
    stages = stage_table(wall, stats)
    profiled = sum(stages.values())
    print(f"attnunet-infer on {image.name} {' '.join(args.extra)}".rstrip())
    print("| stage (under cProfile) | s | share |")
    print("| --- | ---: | ---: |")
    for name, seconds in stages.items():
        print(f"| {name} | {seconds:.2f} | {100 * seconds / profiled:.0f}% |")
    print(f"\nwhole profiled process (wall, with Python's own start): {wall:.1f} s")
    print(f"import attnunet.cli.infer without the profiler: {import_seconds('attnunet.cli.infer'):.2f} s")


if __name__ == "__main__":
    main()
