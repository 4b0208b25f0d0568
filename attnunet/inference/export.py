"""Export a checkpoint's network as ONNX or TorchScript, with a JSON sidecar, and load it back.

``export_model(ckpt, "onnx", "pancreas.onnx")`` writes two files:

* ``pancreas.onnx``: the network's logits-only forward pass (no deep-supervision heads, no
  attention maps) for one sliding window: input ``image`` ``(batch, in_channels, *roi_size)``
  float32, output ``logits`` ``(batch, num_classes, *roi_size)``. The batch axis is dynamic; the
  spatial axes are fixed to the checkpoint's window (``sliding_window.roi_size``), which is the
  only size the sliding window ever feeds (MONAI pads smaller images up to it). A traced network
  is only valid for the size it was traced with: padding to the total stride and the gates'
  resampling are Python decisions that tracing bakes in, so declaring the spatial axes dynamic
  would be a promise the file cannot keep.
* ``pancreas.onnx.json``: plain data, everything inference needs besides the weights: labels,
  preprocessing, sliding-window spec, model description, the checkpoint's split, the attnunet
  version, the format, the input/output names and shapes and the SHA-256 of the model file (a
  model file that does not match its sidecar is refused).

:func:`load_exported` returns the same :class:`~attnunet.inference.checkpoint.LoadedModel` as
:func:`~attnunet.inference.checkpoint.load_checkpoint`, so the :class:`Predictor` runs it
unchanged (``attention=False``: exported files have no gate maps).

Safety: the sidecar is JSON, ONNX files are run by ONNX Runtime and execute no Python. TorchScript
files hold TorchScript code that ``torch.jit.load`` compiles and runs: like any model file, load
them only from a trusted source. Checkpoints are read with ``weights_only=True``
(:func:`~attnunet.inference.checkpoint.load_checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import attnunet
from attnunet.checkpoint_format import CheckpointDescription
from attnunet.data.transforms import PreprocessingSpec
from attnunet.errors import AttnUNetError
from attnunet.inference.checkpoint import LoadedModel, load_checkpoint
from attnunet.inference.sliding_window import SlidingWindowSpec
from attnunet.utils.atomic import atomic_target, write_text_atomically

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
EXPORT_FORMAT = 1  # version of the sidecar layout
ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
VERIFY_BATCH = 2  # export is checked on a batch of this many windows (also exercises the dynamic batch axis)
VERIFY_TOLERANCE = 1e-3  # max |exported - PyTorch| logit difference (absolute + relative) accepted at export


def sidecar_path(model_file: str | Path) -> Path:
    """``pancreas.onnx`` -> ``pancreas.onnx.json``."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name + ".json")


def default_output(ckpt_path: str | Path, fmt: str) -> Path:
    """``.../best.ckpt`` -> ``.../best.onnx`` or ``.../best.torchscript.pt``."""
    ckpt_path = Path(ckpt_path)
    return ckpt_path.with_name(ckpt_path.stem + SUFFIXES[_check_format(fmt)])


class _Logits(nn.Module):
    """The network's forward pass that returns the logits tensor only (what is exported)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_detailed(x).logits


def export_model(ckpt_path: str | Path, fmt: str, output: str | Path | None = None) -> Path:
    """Write the checkpoint's network as ``fmt`` to ``output`` (default beside the checkpoint) and
    its sidecar JSON; both atomically. Returns the model file's path.

    The exported file is run once on a batch of random windows and compared with PyTorch; a
    difference above :data:`VERIFY_TOLERANCE` is an error (nothing is written then).
    """
    fmt = _check_format(fmt)
    if fmt == "onnx":
        _require_onnx()
    ckpt_path = Path(ckpt_path).expanduser()
    model = load_checkpoint(ckpt_path)
    net = model.net.float().eval()
    output = default_output(ckpt_path, fmt) if output is None else Path(output).expanduser()
    if output.resolve() == ckpt_path.resolve():
        raise AttnUNetError("export would overwrite the checkpoint; give another output=", output)
    window = tuple(model.sliding_window.roi_size[: net.spatial_dims])
    in_channels = net.encoder[0][0].in_channels
    num_classes = len(model.labels)
    generator = torch.Generator().manual_seed(0)
    example = torch.rand((VERIFY_BATCH, in_channels, *window), generator=generator)
    with torch.no_grad():
        expected = net(example)
    wrapped = _Logits(net).eval()

    with atomic_target(output, suffix=SUFFIXES[fmt]) as tmp:
        if fmt == "onnx":
            _write_onnx(wrapped, example, tmp)
        else:
            _write_torchscript(wrapped, example, tmp)
        with torch.no_grad():
            got = _runner(fmt, tmp)(example)
        diff = float((got - expected).abs().max())
        allowed = VERIFY_TOLERANCE * (1.0 + float(expected.abs().max()))
        if not diff <= allowed:
            raise AttnUNetError(f"exported {fmt} model differs from PyTorch by {diff:.3g} (allowed {allowed:.3g})")
        digest = _sha256(tmp)
        meta = model.meta
        sidecar = {
            "attnunet_export": EXPORT_FORMAT,
            "format": fmt,
            "model_file": output.name,
            "sha256": digest,
            "attnunet_version": attnunet.__version__,
            "spatial_dims": net.spatial_dims,
            "input": {"name": INPUT_NAME, "shape": ["batch", in_channels, *window], "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", num_classes, *window], "dtype": "float32"},
            "labels": {str(k): v for k, v in model.labels.items()},
            "preprocessing": model.preprocessing.to_dict(),
            "sliding_window": model.sliding_window.to_dict(),
            "model": meta["model"],
            "postprocessing": meta.get("postprocessing") or {},
            "flip_axes": list(meta.get("flip_axes") or []),
            "checkpoint": {
                "file": ckpt_path.name,
                "format": meta.get("format"),
                "attnunet_version": meta.get("version"),
                "split": meta.get("split"),
            },
            "verification": {"batch": VERIFY_BATCH, "max_abs_logit_diff": diff},
        }
        write_text_atomically(sidecar_path(output), json.dumps(sidecar, indent=2) + "\n")
    return output


def load_exported(model_file: str | Path) -> LoadedModel:
    """An exported model and its sidecar -> :class:`LoadedModel` whose ``net`` the Predictor runs.

    ``net`` takes ``(B, C, *roi_size)`` float tensors on any device and returns logits
    ``(B, K, *roi_size)`` on the same device (ONNX runs on the CPU through ONNX Runtime).
    """
    model_file = Path(model_file).expanduser()
    if not model_file.is_file():
        raise AttnUNetError("exported model not found", model_file)
    side = sidecar_path(model_file)
    if not side.is_file():
        raise AttnUNetError(f"no sidecar {side.name} beside the model file (export writes both)", model_file)
    try:
        info = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AttnUNetError(f"unreadable sidecar JSON ({_describe(e)})", side) from None
    if not isinstance(info, dict) or "attnunet_export" not in info:
        raise AttnUNetError("not an attnunet export sidecar (no 'attnunet_export' key)", side)
    try:
        version = int(info["attnunet_export"])
        fmt = str(info["format"])
        labels = {int(k): str(v) for k, v in info["labels"].items()}
        preprocessing = PreprocessingSpec.from_dict(info["preprocessing"])
        window = SlidingWindowSpec.from_dict(info["sliding_window"])
        spatial_dims = int(info["spatial_dims"])
        expected_hash = str(info["sha256"])
        shape_in, shape_out = list(info["input"]["shape"]), list(info["output"]["shape"])
        model_desc, ckpt_info = dict(info["model"]), dict(info.get("checkpoint") or {})
        postprocessing = dict(info.get("postprocessing") or {})
        flip_axes = [int(a) for a in info.get("flip_axes") or []]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise AttnUNetError(f"malformed sidecar ({type(e).__name__}: {e})", side) from None
    if version > EXPORT_FORMAT:
        raise AttnUNetError(f"export format {version} is newer than this attnunet understands", side)
    if fmt not in FORMATS:
        raise AttnUNetError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}", side)
    window_size = list(window.roi_size[:spatial_dims])
    if spatial_dims not in (2, 3) or shape_in[2:] != window_size or shape_out[1] != len(labels):
        raise AttnUNetError("malformed sidecar (input/output shapes disagree with the window and labels)", side)
    if _sha256(model_file) != expected_hash:
        raise AttnUNetError(f"model file does not match its sidecar {side.name} (SHA-256 differs)", model_file)
    if fmt == "onnx":
        _require_onnx()
    net = ExportedNet(_runner(fmt, model_file), fmt, spatial_dims, tuple(shape_in[2:]))
    description = CheckpointDescription(
        model=model_desc,
        labels=labels,
        preprocessing=preprocessing.to_dict(),
        sliding_window=window.to_dict(),
        split=ckpt_info.get("split"),
        postprocessing=postprocessing,
        flip_axes=flip_axes,
        version=ckpt_info.get("attnunet_version"),
        format=ckpt_info.get("format"),
    )
    exported = {k: info.get(k) for k in ("format", "model_file", "sha256", "attnunet_version", "attnunet_export")}
    meta = {**description.to_dict(), "export": exported}
    return LoadedModel(
        net=net, labels=labels, preprocessing=preprocessing, sliding_window=window, meta=meta, source=model_file
    )


class ExportedNet(nn.Module):
    """An exported network behind the interface the Predictor and the sliding window use.

    Accepts ``(B, C, *window)`` float tensors, returns logits ``(B, K, *window)`` (float32, on the
    input's device). ``.to(device, memory_format=...)``, ``.eval()`` work as on the PyTorch net.
    Attention maps are not part of an export: :meth:`forward_detailed` and
    :attr:`attention_names` raise a one-line :class:`AttnUNetError`.
    """

    def __init__(self, runner: nn.Module, fmt: str, spatial_dims: int, window: tuple[int, ...]) -> None:
        super().__init__()
        self.runner = runner
        self.format = fmt
        self.spatial_dims = spatial_dims
        self.window = tuple(int(n) for n in window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.window:
            raise AttnUNetError(
                f"exported {self.format} model runs on windows of {list(self.window)} voxels, got {list(x.shape[2:])}"
            )
        return self.runner(x)

    @property
    def attention_names(self) -> list[str]:
        raise self._no_attention()

    def forward_detailed(self, x: torch.Tensor) -> Any:
        raise self._no_attention()

    def _no_attention(self) -> AttnUNetError:
        return AttnUNetError(f"an exported {self.format} model gives logits only; attention maps need the checkpoint")


class _OnnxRunner(nn.Module):
    """torch -> numpy -> ONNX Runtime (CPU) -> torch, on the caller's device and float32."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same thread budget PyTorch has
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            raise AttnUNetError(f"unreadable ONNX model ({_describe(e)})", path) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(logits).to(x.device)


class _TorchScriptRunner(nn.Module):
    """A ``torch.jit.load``-ed module; inputs are cast to its float32 weights' dtype unless autocast rules."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        try:
            self.module = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001 - the TorchScript loader raises many types
            raise AttnUNetError(f"unreadable TorchScript model ({_describe(e)})", path) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _runner(fmt: str, path: Path) -> nn.Module:
    return (_OnnxRunner if fmt == "onnx" else _TorchScriptRunner)(path).eval()


def _write_onnx(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    # The TorchScript-based exporter (dynamo=False) needs only the ``onnx`` package; the default
    # torch.export-based one would also need ``onnxscript``. Its tracer warnings (sizes turned into
    # constants) are exactly the fixed window size this export promises.
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def _write_torchscript(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example, check_trace=False)
    torch.jit.save(traced, str(path))


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise AttnUNetError(
            f"ONNX needs the optional packages (pip install 'attnunet[onnx]'): {e.name} missing"
        ) from None


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise AttnUNetError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return fmt


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe(e: BaseException) -> str:
    """``<Type>: <first line of the message>`` (at most 160 characters of it)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:160]}" if lines else type(e).__name__
