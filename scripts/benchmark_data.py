"""Data pipeline benchmark: cache modes, and whether loading keeps up with the model.

Writes a synthetic set (``--layout msd|nnunet|nih``), then times one pass over the training cases
(preprocessing + patch sampling + augmentation) with ``data.cache=none``, ``memory`` and ``disk``
(first run fills the cache, second run is a new data module reading it), and compares the time to
produce one training batch with one training step of the default model on that batch. The last row
renders every patch anew from its tissue map (``data.appearance``, as ``experiment=sim2real``), from
the memory cache: its extra time per batch is compared with the training step too.

    python scripts/benchmark_data.py --cases 8 --json data_benchmark.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from attnunet.data.datamodule import SegmentationDataModule
from attnunet.phantom import write_dataset
from attnunet.training.module import SegmentationModule
from attnunet.utils.hardware import has_fast_bf16
from attnunet.utils.process import keep_freed_memory


def one_pass(dm: SegmentationDataModule) -> tuple[float, float]:
    """Seconds to set up (fills a memory cache) and to draw every training batch once."""
    start = time.perf_counter()
    dm.setup()
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in dm.train_dataloader():
        pass
    return setup, time.perf_counter() - start


def train_step_seconds(dm: SegmentationDataModule, repeats: int) -> float:
    """Median seconds of one optimiser step of the default model on a real training batch."""
    module = SegmentationModule(
        model={"channels": [16, 32, 64, 128, 256]},
        labels=dm.labels,
        preprocessing=dm.spec.to_dict(),
        sliding_window={"roi_size": list(dm.patch_size)},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3},
        scheduler=None,
        loss={},
    )
    optimiser = torch.optim.AdamW(module.parameters(), lr=1e-3)
    batch = next(iter(dm.train_dataloader()))
    bf16 = has_fast_bf16("cpu")
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module.training_step(batch, 0)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--layout", default="msd", choices=["msd", "nnunet", "nih"])
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    keep_freed_memory()
    warnings.filterwarnings("ignore")  # self.log outside a Trainer, MONAI deprecations
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="attnunet-data-bench-"))
    root = work / "data"
    write_dataset(root, num_cases=args.cases, seed=0, layout=args.layout)
    layout = {"layout": "nih", "image_dir": "Pancreas-CT", "label_dir": "TCIA_pancreas_labels-02-05-2017"}
    common: dict[str, Any] = {"root": str(root), "num_workers": 0, "cache_dir": str(work / "cache")}
    common.update(layout if args.layout == "nih" else {})

    rows: list[dict[str, Any]] = []
    for label, mode, appearance in (
        ("none", "none", None),
        ("memory", "memory", None),
        ("disk, first run", "disk", None),
        ("disk, next run", "disk", None),
        ("memory+appearance", "memory", {}),
    ):
        dm = SegmentationDataModule(cache=mode, appearance=appearance, **common)
        setup, epoch = one_pass(dm)
        batches = len(dm.train_dataloader())
        rows.append({"cache": label, "setup_s": setup, "epoch_s": epoch, "per_batch_s": epoch / batches})
    step = train_step_seconds(dm, args.repeats)

    none = rows[0]["setup_s"] + rows[0]["epoch_s"]
    print(
        f"{args.cases} synthetic cases ({args.layout} layout), "
        f"{len(dm.train_set)} training volumes, patch {dm.patch_size}"
    )
    print(f"{'cache':<18}{'setup s':>9}{'epoch s':>9}{'s/batch':>9}{'epoch vs none':>15}")
    for r in rows:
        uncached = r["cache"] in ("none", "disk, first run")
        r["speedup_vs_none"] = none / (r["setup_s"] + r["epoch_s"]) if uncached else none / r["epoch_s"]
        print(
            f"{r['cache']:<18}{r['setup_s']:>9.2f}{r['epoch_s']:>9.2f}{r['per_batch_s']:>9.3f}{r['speedup_vs_none']:>14.1f}x"
        )
    cached = rows[3]["per_batch_s"]
    extra = rows[4]["per_batch_s"] - rows[1]["per_batch_s"]
    print(f"model training step (default net, bf16={has_fast_bf16('cpu')}): {step:.2f} s per batch")
    print(
        f"data time / model time per batch: {cached / step:.1%} from the disk cache, "
        f"{rows[0]['per_batch_s'] / step:.0%} uncached"
    )
    print(f"per-patch appearance: +{extra:.3f} s per batch = {extra / step:.1%} of a training step")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "train_step_s": step, "cases": args.cases, "layout": args.layout}, indent=2)
        )


if __name__ == "__main__":
    main()
