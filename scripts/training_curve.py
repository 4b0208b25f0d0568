"""Print val/dice against wall-clock time for a training run, from its TensorBoard events.

    python scripts/training_curve.py outputs/train/<run> [--target 0.85]

Time is measured from the first logged event (data generation and caching before it are reported
separately as the gap between the run folder's creation and that event).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--tag", default="val/dice")
    args = parser.parse_args()
    events = EventAccumulator(str(args.run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    start = (args.run_dir / ".hydra" / "config.yaml").stat().st_mtime
    points = events.Scalars(args.tag)
    epochs = {e.step: e.value for e in events.Scalars("epoch")} if "epoch" in events.Tags()["scalars"] else {}
    print(f"| minutes since start | step | epoch | {args.tag} |")
    print("| ---: | ---: | ---: | ---: |")
    reached = None
    for p in points:
        minutes = (p.wall_time - start) / 60
        print(f"| {minutes:.1f} | {p.step} | {epochs.get(p.step, float('nan')):.0f} | {p.value:.4f} |")
        if reached is None and p.value >= args.target:
            reached = minutes
    best = max(points, key=lambda p: p.value)
    print(
        f"\nbest {args.tag} {best.value:.4f} at step {best.step}; "
        + (f"first >= {args.target} after {reached:.1f} min" if reached is not None else f"never reached {args.target}")
    )


if __name__ == "__main__":
    main()
