"""attnunet versus MONAI's AttentionUnet, measured side by side in one run.

    python scripts/benchmark.py                       # CPU (and CUDA when present), default sizes
    python scripts/benchmark.py --patch 64 --volume 160 160 96 --json results.json

Every configuration runs in its own subprocess so that peak memory (RSS, or CUDA max allocated) is
its own. "Tuned" rows run with attnunet's runtime settings (glibc malloc tuning, cudnn autotuning),
"untuned" rows without. Rows: MONAI ``AttentionUnet`` fp32 (the reference) and bf16 (matched
precision), both tuned so that the ratios isolate the network and precision; MONAI fp32 untuned, as
its users run it; attnunet fp32 tuned and untuned; attnunet bf16 autocast (the product's default on
CPUs with bf16 and on GPUs). attnunet rows use the
product's own memory formats (``channels_last=auto``): channels-last for CPU inference, contiguous
otherwise (measured faster there). Columns: forward latency of one ``1x1xP^3``
patch, one training step (batch 2, AdamW, Dice+CE), a Gaussian sliding window over a full volume
(roi P, overlap 0.25) over the real test CT resized to 256x256x160 on CPU, 512x512x256 on CUDA,
peak memory, and voxel agreement of the argmax with attnunet's own fp32 output on the same input
(random weights: near-ties dominate it; ``--ckpt`` gives the attnunet rows and the full-CT run
trained weights). Ratios are against the reference measured in the same run. Also printed: forward
FLOPs per patch of each network against the device's measured peak (fp32 and bf16), and the
end-to-end ``attnunet-infer`` run on a full-size CT (``benchmark_full_ct.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmark_full_ct import TEST_CT, full_ct_benchmark, print_full_ct

CONFIGS = {
    "monai_fp32": {"net": "monai", "bf16": False, "tuned": True},
    "monai_bf16": {"net": "monai", "bf16": True, "tuned": True},
    "monai_fp32_untuned": {"net": "monai", "bf16": False, "tuned": False},  # as MONAI's users run it
    "attnunet_fp32": {"net": "attnunet", "bf16": False, "tuned": True},
    "attnunet_fp32_untuned": {"net": "attnunet", "bf16": False, "tuned": False},
    "attnunet_bf16": {"net": "attnunet", "bf16": True, "tuned": True},
}
CHANNELS = (16, 32, 64, 128, 256)
DEFAULT_VOLUME = {"cpu": (256, 256, 160), "cuda": (512, 512, 256)}  # CUDA: a full CT's size


def build(name: str, ckpt: Path | None = None):
    """MONAI's or attnunet's network with random weights; attnunet's from ``ckpt`` when given (a
    trained default model, so that the argmax agreement is not a count of near-ties)."""
    import torch
    from monai.networks.nets import AttentionUnet

    from attnunet.inference.checkpoint import load_checkpoint
    from attnunet.models.attention_unet import AttentionUNet

    torch.manual_seed(0)
    if name == "monai":
        return AttentionUnet(spatial_dims=3, in_channels=1, out_channels=2, channels=CHANNELS, strides=(2, 2, 2, 2))
    if ckpt is not None:
        loaded = load_checkpoint(ckpt)
        widths = tuple(loaded.meta["model"].get("channels", ()))
        if widths != CHANNELS or len(loaded.labels) != 2:
            raise SystemExit(f"error: {ckpt}: needs widths {CHANNELS} and 2 labels, got {widths}, {len(loaded.labels)}")
        return loaded.net
    return AttentionUNet(channels=CHANNELS, activation="leaky_relu")  # the configs' default


def timed(fn, repeats: int, sync, warmup: bool = True, after_warmup=None) -> float:
    """Median seconds of ``repeats`` calls, after one untimed call (allocator, oneDNN/cuDNN kernel
    selection) when ``warmup``; ``after_warmup`` runs between the two (e.g. to reset memory stats)."""
    if warmup:
        fn()
        sync()
    if after_warmup is not None:
        after_warmup()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def worker(config: str, args: argparse.Namespace) -> dict:
    import torch
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss

    from attnunet.utils.process import prepare_process

    spec = CONFIGS[config]
    if spec["tuned"]:  # the product's defaults: malloc tuning, TF32 matmuls, cudnn autotuning
        prepare_process({})
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    # CUDA memory: the peak of each timed phase, not of the warm-ups (cuDNN autotuning tries
    # workspaces there that the tuned rows would otherwise be charged for).
    cuda_peaks: list[int] = []
    reset_peak = torch.cuda.reset_peak_memory_stats if cuda else None
    net = build(spec["net"], args.ckpt).to(device)
    ours = spec["net"] == "attnunet"
    # attnunet as the product runs it (channels_last=auto): channels-last inference on CPU only,
    # contiguous training. MONAI's model contiguous, except bf16 on CUDA, where channels-last
    # measured faster for it (its BatchNorm): the stronger reference.
    if ours:
        infer_fmt = torch.contiguous_format if cuda else torch.channels_last_3d
        train_fmt = torch.contiguous_format
    else:
        faster = torch.channels_last_3d if cuda and spec["bf16"] else torch.contiguous_format
        infer_fmt = train_fmt = faster
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec["bf16"])
    gen = torch.Generator().manual_seed(1)
    p = args.patch
    net = net.to(memory_format=infer_fmt)
    patch = torch.rand(1, 1, p, p, p, generator=gen).to(device).contiguous(memory_format=infer_fmt)
    volume = torch.load(args.volume_file, weights_only=True).to(device)

    net.eval()
    with torch.inference_mode(), autocast:
        forward_s = timed(lambda: net(patch), args.repeats, sync, after_warmup=reset_peak)
        cuda_peaks.append(torch.cuda.max_memory_allocated() if cuda else 0)
        window = {"roi_size": (p, p, p), "sw_batch_size": 2, "overlap": 0.25, "mode": "gaussian"}
        held = {}

        def whole_volume() -> None:
            held["logits"] = sliding_window_inference(volume, predictor=net, **window)

        # CPU: oneDNN kernels are warm from the forward timing. CUDA: warm up once more, since
        # cuDNN autotunes again for the window batch of 2.
        sw_s = timed(whole_volume, 1, sync, warmup=cuda, after_warmup=reset_peak)
        cuda_peaks.append(torch.cuda.max_memory_allocated() if cuda else 0)
    argmax = held["logits"].float().argmax(1).to("cpu", torch.uint8)

    net.train()
    net = net.to(memory_format=train_fmt)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4)
    batch = torch.rand(2, 1, p, p, p, generator=gen).to(device).contiguous(memory_format=train_fmt)
    target = (torch.rand(2, 1, p, p, p, generator=gen) > 0.9).float().to(device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with autocast:
            out = net(batch)
        loss_fn(out.float(), target).backward()
        optimiser.step()

    train_s = timed(step, args.repeats, sync, after_warmup=reset_peak)
    if cuda:
        peak = max(*cuda_peaks, torch.cuda.max_memory_allocated()) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if ours:  # compared with attnunet's fp32 argmax; MONAI's are not compared
        torch.save(argmax, Path(args.tmp) / f"{config}.pt")
    return {"forward_s": forward_s, "train_step_s": train_s, "sliding_window_s": sw_s, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda; default: both where available")
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--volume", type=int, nargs=3, default=None, help="default: per device, DEFAULT_VOLUME")
    parser.add_argument("--no-full-ct", action="store_true", help="skip the end-to-end attnunet-infer run")
    parser.add_argument("--ckpt", type=Path, default=None, help="trained default model: attnunet rows, full CT")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--all-precisions",
        action="store_true",
        help="also run the bf16 rows on a device without native bf16 (emulated there: minutes per row)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--volume-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return

    import tempfile

    import torch

    from attnunet.utils.hardware import has_fast_bf16

    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict = {"machine": machine_description(), "torch": torch.__version__, "rows": {}}
    results["gflop_per_patch"] = {net: forward_gflop(net, args.patch, args.ckpt) for net in ("monai", "attnunet")}
    if torch.cuda.is_available():
        results["cuda_device"] = torch.cuda.get_device_name()
    print(f"machine: {results['machine']}; torch {torch.__version__}; cuda: {results.get('cuda_device', 'none')}")
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            volume = args.volume or DEFAULT_VOLUME[device]
            volume_file = Path(tmp) / "volume.pt"
            torch.save(ct_volume(volume), volume_file)
            rows = {}
            fast_bf16 = has_fast_bf16(device)
            if not fast_bf16 and not args.all_precisions:
                print(f"[{device}] no native bf16: bf16 rows skipped (precision=auto runs fp32 here)", file=sys.stderr)
            for config in (c for c in CONFIGS if fast_bf16 or args.all_precisions or not CONFIGS[c]["bf16"]):
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    config,
                    "--device",
                    device,
                    "--patch",
                    str(args.patch),
                    "--repeats",
                    str(args.repeats),
                    "--volume-file",
                    str(volume_file),
                    "--tmp",
                    tmp,
                    *(["--ckpt", str(args.ckpt)] if args.ckpt else []),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"error: {config} on {device} failed:\n{out.stderr[-4000:]}")
                rows[config] = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"[{device}] {config}: {rows[config]}", file=sys.stderr, flush=True)
                if config.startswith("attnunet"):
                    ref = torch.load(Path(tmp) / "attnunet_fp32.pt")
                    mine = torch.load(Path(tmp) / f"{config}.pt")
                    rows[config]["argmax_agreement"] = float((mine == ref).float().mean())
            results["rows"][device] = rows
            dtypes = ("fp32", "bf16") if "attnunet_bf16" in rows else ("fp32",)
            results.setdefault("peak_gflops", {})[device] = {dt: compute_peak(device, dt) for dt in dtypes}
            shipped = "attnunet_bf16" if fast_bf16 else "attnunet_fp32"
            print_table(device, rows, args.patch, volume, args.repeats, shipped)
            print_efficiency(device, rows, results)
            if not args.no_full_ct:
                results.setdefault("full_ct", {})[device] = full_ct_benchmark(device, ckpt=args.ckpt)
                print_full_ct(results["full_ct"][device])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def ct_volume(shape: tuple[int, ...]):
    """The real test CT, through the default preprocessing's HU window to [0, 1], resized to
    ``shape``: ``(1, 1, *shape)`` float32. Real anatomy rather than noise, so the argmax agreement
    is not dominated by near-ties that a noise input produces everywhere."""
    import nibabel as nib
    import torch
    import torch.nn.functional as F

    from attnunet.data.transforms import PreprocessingSpec

    low, high = PreprocessingSpec().intensity_window
    hu = torch.from_numpy(nib.load(TEST_CT).get_fdata(dtype="float32"))
    windowed = ((hu - low) / (high - low)).clamp(0.0, 1.0)
    return F.interpolate(windowed[None, None], size=tuple(shape), mode="trilinear", align_corners=False)


def machine_description() -> str:
    """CPU model, threads torch uses, and its bf16-relevant instruction sets (Linux); else the platform."""
    import torch

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model or platform.machine()}, {torch.get_num_threads()} threads, {' '.join(extras) or 'no AVX-512'}"


def forward_gflop(name: str, patch: int, ckpt: Path | None = None) -> float:
    """Forward FLOPs (GFLOP) of one ``1x1xP^3`` patch, counted by torch's FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = build(name, ckpt).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 1, patch, patch, patch))
    return counter.get_total_flops() / 1e9


def compute_peak(device: str, dtype: str) -> float:
    """Practical peak GFLOP/s of this device and precision: the faster of a large square matmul and
    a 3x3x3 convolution of 64 channels (channels-last). On AMD CPUs the matmul goes through a BLAS
    that may not use AVX-512 while oneDNN's convolutions do, so the matmul alone understates it.
    On CUDA "fp32" is measured as the tuned rows run it: with TF32 tensor cores (matmul precision
    ``high``, cuDNN's default for convolutions) and cuDNN autotuning."""
    import torch

    from attnunet.utils.process import prepare_process

    if device == "cuda":
        prepare_process({})
    kind = torch.bfloat16 if dtype == "bf16" else torch.float32
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    n = 8192 if device == "cuda" else 1024
    a, b = (torch.rand(n, n, device=device).to(kind) for _ in range(2))
    matmul = 2 * n**3 / peak_timed(lambda: a @ b, sync)
    side = 64 if device == "cuda" else 24
    conv = torch.nn.Conv3d(64, 64, 3, padding=1, bias=False).to(device, kind, memory_format=torch.channels_last_3d)
    x = torch.rand(2, 64, side, side, side, device=device).to(kind).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        convolution = 2 * 64 * 64 * 27 * x[:, 0].numel() / peak_timed(lambda: conv(x), sync)
    return max(matmul, convolution) / 1e9


def peak_timed(fn, sync) -> float:
    """Seconds per call for :func:`compute_peak`: the median of 5 after a warm-up, or the first call
    alone when that takes over a second (bf16 on a CPU without bf16 instructions runs at well under
    1 GFLOP/s, where repeats would take minutes and change nothing)."""
    start = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - start
    return first if first > 1.0 else timed(fn, 5, sync, warmup=False)


def print_efficiency(device: str, rows: dict, results: dict) -> None:
    peak = results["peak_gflops"][device]
    fp32 = "fp32 (TF32)" if device == "cuda" else "fp32"
    bf16 = f", {peak['bf16']:.0f} bf16" if "bf16" in peak else ""
    print(f"\n{device}: measured peak (matmul or 3x3x3 conv): {peak['fp32']:.0f} GFLOP/s {fp32}{bf16}")
    for name, r in rows.items():
        net, dtype = name.split("_")[0], "bf16" if name.endswith("bf16") else "fp32"
        achieved = results["gflop_per_patch"][net] / r["forward_s"]
        print(
            f"- {name}: {results['gflop_per_patch'][net]:.1f} GFLOP per patch, forward {achieved:.0f} GFLOP/s "
            f"= {100 * achieved / peak[dtype]:.0f}% of the {dtype} peak"
        )


def print_table(device: str, rows: dict, patch: int, volume: tuple[int, ...], repeats: int, shipped_row: str) -> None:
    """Every row against ``monai_fp32``, then ``shipped_row`` (what precision=auto runs on this
    device) against MONAI fp32 untuned."""
    ref = rows["monai_fp32"]
    print(f"\n{device}: patch {patch}^3, volume {'x'.join(map(str, volume))}; forward and step: median of {repeats}")
    print("| configuration | forward (s) | x | train step (s) | x | sliding window (s) | x | peak MiB | argmax agree |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        agree = r.get("argmax_agreement")
        print(
            f"| {name} | {r['forward_s']:.3f} | {ref['forward_s'] / r['forward_s']:.2f} | {r['train_step_s']:.2f} | "
            f"{ref['train_step_s'] / r['train_step_s']:.2f} | {r['sliding_window_s']:.1f} | "
            f"{ref['sliding_window_s'] / r['sliding_window_s']:.2f} | {r['peak_mib']:.0f} | "
            f"{'-' if agree is None else f'{100 * agree:.3f}%'} |"
        )
    shipped, ours = rows["monai_fp32_untuned"], rows[shipped_row]
    ratios = {k: shipped[k] / ours[k] for k in ("forward_s", "train_step_s", "sliding_window_s")}
    print(
        f"\n{shipped_row} (as shipped) against MONAI fp32 as its users run it (untuned): forward "
        f"{ratios['forward_s']:.2f}x, train step {ratios['train_step_s']:.2f}x, "
        f"sliding window {ratios['sliding_window_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
