"""Checkpoint -> preprocess -> sliding window (+ flip TTA) -> invert -> arrays on the input grid."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai import transforms as mt
from monai.data import MetaTensor

from attnunet.data.transforms import IMAGE, preprocessing
from attnunet.errors import AttnUNetError, as_user_error
from attnunet.inference.checkpoint import LoadedModel
from attnunet.inference.postprocessing import foreground_labels, keep_largest_component, resolve_largest_component
from attnunet.inference.regrid import RegridPlan, network_box, to_input_grid
from attnunet.inference.sliding_window import SlidingWindowSpec, predict_logits, predict_with_attention, slabs
from attnunet.inference.streamed_read import read_streamed
from attnunet.io.nifti_order import in_nifti_order
from attnunet.utils.channels import argmax_channels
from attnunet.utils.hardware import resolve_channels_last, resolve_device, resolve_precision

PRED = "pred"
# Input voxels regridded and labelled at a time (a 512 x 512 plane: 16 planes, 2 x 64 MB for two classes).
PIECE_VOXELS = 2**22
INPUT_HU = "input_hu"
# Gate maps leave the predictor as uint8 codes of alpha (a sigmoid, so within [0, 1]): a quarter of
# float32's memory, finer than any colour scale shows, and written as they are (NIfTI slope 1/255).
ALPHA_STEPS = 255


@dataclass(frozen=True)
class PredictorSettings:
    """Run-time choices; the model and preprocessing always come from the checkpoint.

    Attributes:
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        precision: ``auto`` (bf16 where the hardware has it), ``bf16`` or ``fp32``.
        (``auto`` values are resolved once, by :mod:`attnunet.utils.hardware`, when the
        :class:`Predictor` is built; ``Predictor.settings`` then holds the concrete ones.)
        overlap, sw_batch_size: sliding-window overrides (``None``: the checkpoint's).
        tta: average the softmax over every combination of flips along the axes the model was
            trained mirrored along (its checkpoint's ``flip_axes``); refused for a model trained
            without flips, which misreads a mirrored abdomen (docs/explanation/sim2real.md).
        largest_component: keep only the largest connected component of a label: ``auto`` for the
            labels whose validation Dice it raised in training (stored in the checkpoint; none for
            older checkpoints and exported models without that record), ``True`` every label,
            ``False`` none (:mod:`attnunet.inference.postprocessing`).
        attention: also return the gate maps (alpha) on the input grid.
        channels_last: run the network in channels-last memory format (``auto``: on CPU only, see
            :func:`~attnunet.utils.hardware.resolve_channels_last`).
        compile: run the network through ``torch.compile`` (measured slower on CPU).
        keep_input: also return the input volume as read (``Prediction.input_hu``), so a preview
            needs no second read of the file.
        slab_size: run the sliding window in slabs of about this many network-grid voxels along
            its longest axis, each regridded and labelled before the next (``None``: in one piece).
            Same windows and blending, so the same labels; refused with TTA and attention maps.
    """

    device: str = "auto"
    precision: str = "auto"
    overlap: float | None = None
    sw_batch_size: int | None = None
    tta: bool = False
    largest_component: bool | str = "auto"
    attention: bool = False
    channels_last: bool | str = "auto"
    compile: bool = False
    keep_input: bool = False
    slab_size: int | None = None


@dataclass
class Prediction:
    """Outputs on the input's own voxel grid, ``(X, Y, Z)`` in the file's storage order.

    The network ran only on the input voxels of ``network_box`` (the body crop); outside it every
    voxel is background (label 0, probability 1 for class 0, alpha 0). The class probabilities are
    held for that box and laid out full-size only when :attr:`probabilities` is read, since most runs
    write labels only and the box is often a fifth of a CT's voxels.
    """

    labels: np.ndarray  # uint8
    # float32 (K, *box shape): the softmax on the input voxels of network_box; None: made on first use
    # by box_probabilities_from (labels-only runs never hold K float32 values per input voxel).
    box_probabilities: np.ndarray | None
    input_affine: np.ndarray  # 4x4 RAS affine of the input grid (as read: NIfTI or DICOM series)
    # Per gate, alpha as uint8 codes (X, Y, Z) in NIfTI voxel order: code = alpha * ALPHA_STEPS rounded,
    # 0 outside network_box; alpha(gate) gives the floats back (to within 1 / (2 * ALPHA_STEPS)).
    attention: dict[str, np.ndarray] = field(default_factory=dict)
    # The input voxels the network ran on (the body crop); None when the grids are not axis-aligned
    # (the network's output then covers the whole input grid and box_probabilities is full-size).
    network_box: tuple[slice, slice, slice] | None = None
    input_hu: np.ndarray | None = None  # (X, Y, Z) the input as read, with PredictorSettings.keep_input
    box_probabilities_from: Callable[[], np.ndarray] | None = None

    def probabilities_in_box(self) -> np.ndarray:
        """:attr:`box_probabilities`, made (and kept) on first use."""
        if self.box_probabilities is None:
            assert self.box_probabilities_from is not None, "a Prediction needs box_probabilities or their source"
            self.box_probabilities = self.box_probabilities_from()
        return self.box_probabilities

    def network_region(self) -> np.ndarray:
        """bool ``(X, Y, Z)``: the input voxels the network ran on (all of them without a box)."""
        ran = np.zeros(self.labels.shape, dtype=bool)
        ran[self.network_box or (slice(None),) * ran.ndim] = True
        return ran

    def alpha(self, gate: str) -> np.ndarray:
        """Gate ``gate``'s attention coefficients, float32 ``(X, Y, Z)`` in [0, 1]."""
        return self.attention[gate].astype(np.float32) / ALPHA_STEPS

    @functools.cached_property
    def probabilities(self) -> np.ndarray:
        """float32 ``(K, X, Y, Z)`` class probabilities on the whole input grid (background outside
        ``network_box``), built on first use."""
        in_box = self.probabilities_in_box()
        if self.network_box is None:
            return in_box
        full = np.zeros((in_box.shape[0], *self.labels.shape), np.float32)
        full[0] = 1.0
        full[(slice(None), *self.network_box)] = in_box
        return full


def labels_in_pieces(
    plan: RegridPlan,
    probabilities: torch.Tensor,
    labels: torch.Tensor,
    region: Sequence[slice] | None = None,
    net_origin: Sequence[int] = (0, 0, 0),
) -> None:
    """Argmax of ``probabilities`` ``(K, *S)`` (the network grid from ``net_origin`` on) on the input
    voxels of ``region`` (default: the plan's), written into ``labels`` ``(*S_input)`` piece by
    piece: the K float32 values per voxel exist for one piece at a time, so this stage needs no
    full-size float array (each piece equals that part of the whole)."""
    for piece in plan.pieces(PIECE_VOXELS, region):
        labels[piece] = argmax_channels(plan.resample_piece(probabilities, piece, net_origin), 0, torch.uint8)


def probabilities_in_box(plan: RegridPlan, probabilities: torch.Tensor) -> np.ndarray:
    """float32 ``(K, *box shape)``: ``probabilities`` ``(K, *S_net)`` on ``plan``'s input voxels (the
    one full-size float array of a run that writes probabilities, which is that output itself)."""
    return plan.resample(probabilities).numpy()


def alpha_codes(alpha: torch.Tensor) -> np.ndarray:
    """Attention coefficients in [0, 1] (any shape) -> uint8 codes ``alpha * ALPHA_STEPS`` rounded half
    up, as the box path of :meth:`Predictor._maps_to_input_grid` rounds."""
    return alpha.mul(ALPHA_STEPS).clamp_(0, ALPHA_STEPS).add_(0.5).to(torch.uint8).numpy()


def tta_flip_axes(model: LoadedModel) -> list[int]:
    """The spatial axes ``model`` was trained mirrored along, which flip TTA may use; refused when none."""
    axes = sorted({int(a) for a in model.meta.get("flip_axes") or []})
    if not axes:
        raise AttnUNetError(
            "tta=true needs a model trained with flip augmentation (data.augmentation.flip_prob > 0); "
            "this one was not, so it would misread the flipped scans: leave tta off",
            model.source,
        )
    return axes


class Predictor:
    """Runs one loaded model on image files, exactly as validation ran it in training."""

    def __init__(self, model: LoadedModel, settings: PredictorSettings | None = None) -> None:
        self.model = model
        self.models = [model]  # every member whose output is averaged (one here; see EnsemblePredictor)
        settings = settings or PredictorSettings()
        self.device = resolve_device(settings.device)
        self.settings = dataclasses.replace(
            settings,
            device=str(self.device),
            precision=resolve_precision(settings.precision, self.device.type, "infer"),
            channels_last=resolve_channels_last(settings.channels_last, self.device.type, "infer"),
        )
        if self.settings.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {settings.precision!r}")
        resolve_largest_component(self.settings.largest_component, [], [])  # a bad value fails here, early
        self.flip_axes = tta_flip_axes(model) if self.settings.tta else []
        if self.settings.slab_size is not None and (self.settings.tta or self.settings.attention):
            # Flipping a slab moves its windows off the one-piece run's; gate maps are not slabbed.
            raise AttnUNetError("slab_size does not combine with tta=true or attention maps: leave one of them off")
        if self.settings.slab_size is not None and int(self.settings.slab_size) < 1:
            raise AttnUNetError(f"slab_size must be a positive number of voxels, got {self.settings.slab_size}")
        wanted = self.settings.channels_last and model.net.spatial_dims == 3
        fmt = torch.channels_last_3d if wanted else torch.contiguous_format
        # Channels-last weights make oneDNN/cuDNN produce channels-last activations throughout.
        self.net = model.net.to(self.device, memory_format=fmt).eval()
        if self.settings.compile:
            self.net.compile()
        base = model.sliding_window
        self.window = SlidingWindowSpec(
            roi_size=base.roi_size,
            overlap=base.overlap if self.settings.overlap is None else self.settings.overlap,
            sw_batch_size=base.sw_batch_size if self.settings.sw_batch_size is None else self.settings.sw_batch_size,
            mode=base.mode,
        )
        keep = INPUT_HU if self.settings.keep_input else None
        self.pre = mt.Compose(preprocessing(model.preprocessing, keys=[IMAGE], keep_input_as=keep))
        self.invert = mt.Invertd(PRED, transform=self.pre, orig_keys=IMAGE, nearest_interp=False, to_tensor=True)

    @property
    def largest_component_labels(self) -> list[int]:
        """The labels post-processed to their largest connected piece (see ``largest_component``)."""
        metas = [m.meta for m in self.models]
        return resolve_largest_component(self.settings.largest_component, metas, foreground_labels(self.model.labels))

    def preprocess(self, image_path: str | Path) -> MetaTensor:
        """The checkpoint's preprocessing: ``(1, X, Y, Z)`` network input carrying its inverse."""
        return self.read(image_path)[IMAGE]

    def read(self, image_path: str | Path) -> dict[str, Any]:
        """Read and preprocess one image (no network): the input of :meth:`predict`. Holds the
        network input under ``image`` and, with ``keep_input``, the input as read (:data:`INPUT_HU`).
        Safe to run in another thread while :meth:`predict` runs (the runner reads ahead so)."""
        try:
            streamed = None if self.settings.keep_input else read_streamed(self.model.preprocessing, image_path)
            return streamed or self.pre({IMAGE: str(image_path)})
        except Exception as e:  # noqa: BLE001 - loaders raise many types; report one clean line
            raise as_user_error(e, image_path, "unreadable or unusable image") from None

    def __call__(self, image_path: str | Path) -> Prediction:
        return self.predict(self.read(image_path))

    def predict(self, data: dict[str, Any]) -> Prediction:
        """Network, flip TTA, regrid and argmax for what :meth:`read` returned."""
        image = data[IMAGE]
        x = image.as_tensor()[None].to(self.device)
        input_shape = tuple(int(n) for n in image.meta["spatial_shape"])
        box = network_box(image.affine.numpy(), image.meta["original_affine"], image.shape[1:], input_shape)
        # Only the box is regridded and labelled: the rest of the field of view is the air the body
        # crop removed, background by construction, and most of a full CT's voxels.
        plan = RegridPlan.create(image.affine.numpy(), image.meta["original_affine"], input_shape, x.shape[2:], box)
        labels = torch.zeros((1, *input_shape), dtype=torch.uint8)
        if self.settings.slab_size is not None and plan is not None:
            probs = self._labels_by_slab(x, plan, labels[0])
            return Prediction(
                labels=keep_largest_component(labels, self.largest_component_labels)[0].numpy(),
                box_probabilities=None,
                box_probabilities_from=functools.partial(probabilities_in_box, plan, probs),
                input_affine=np.asarray(image.meta["original_affine"], dtype=np.float64),
                network_box=box,
            )
        with torch.inference_mode(), self._autocast():
            probs, maps = self._probabilities(x)
        if plan is None:  # grids not axis-aligned: Invertd on the whole input grid
            box_probabilities: np.ndarray | None = self._to_input_grid(image, probs[0]).numpy()
            labels[0] = argmax_channels(torch.from_numpy(box_probabilities), 0, torch.uint8)
        else:
            box_probabilities = None  # made on first use: K float32 values per box voxel
            labels_in_pieces(plan, probs[0], labels[0])
        labels = keep_largest_component(labels, self.largest_component_labels)
        return Prediction(
            labels=labels[0].numpy(),
            box_probabilities=box_probabilities,
            box_probabilities_from=None if plan is None else functools.partial(probabilities_in_box, plan, probs[0]),
            input_affine=np.asarray(image.meta["original_affine"], dtype=np.float64),
            attention=self._maps_to_input_grid(image, maps, box, input_shape),
            network_box=box,
            input_hu=np.asarray(data[INPUT_HU]) if INPUT_HU in data else None,
        )

    def _labels_by_slab(self, x: torch.Tensor, plan: RegridPlan, labels: torch.Tensor) -> torch.Tensor:
        """The slab mode: the sliding window run slab by slab along the network grid's longest
        axis (:func:`~attnunet.inference.sliding_window.slabs`: the one-piece run's windows and
        blending), each slab's final planes regridded and labelled into ``labels`` ``(*S_input)``
        before the next one runs. Returns the softmax ``(K, *S_net)`` put together from the slabs
        (the network grid: kept for a run that writes probabilities)."""
        axis = int(np.argmax(x.shape[2:]))
        # A 2D net's windows are single axial slices along the last axis.
        roi = self.window.roi_size[axis] if self.model.net.spatial_dims == 3 or axis < 2 else 1
        pieces = slabs(x.shape[2 + axis], roi, self.window.overlap, int(self.settings.slab_size))
        a = next(i for i, (q, _, _) in enumerate(plan.mapping) if q == axis)  # the input axis it maps to
        regions = plan.split(a, [p.final.start for p in pieces])
        finals = []
        for piece, along in zip(pieces, regions):
            with torch.inference_mode(), self._autocast():
                probs, _ = self._probabilities(x.narrow(2 + axis, piece.run.start, piece.run.stop - piece.run.start))
            final = probs[0].narrow(1 + axis, piece.final.start - piece.run.start, piece.final.stop - piece.final.start)
            origin = [0, 0, 0]
            origin[axis] = piece.final.start
            region = tuple(along if i == a else s for i, s in enumerate(plan.region))
            labels_in_pieces(plan, final, labels, region, origin)
            finals.append(final)
        kept = [f.narrow(1 + axis, 0, n.final.start - p.final.start) for f, p, n in zip(finals, pieces, pieces[1:])]
        return torch.cat([*kept, finals[-1]], dim=1 + axis)

    def _maps_to_input_grid(
        self, image: MetaTensor, maps: dict[str, torch.Tensor], box: tuple[slice, ...] | None, shape: Sequence[int]
    ) -> dict[str, np.ndarray]:
        """Gate maps ``(1, 1, *S_net)`` -> uint8 codes ``(*S_input)`` each (:attr:`Prediction.attention`),
        0 outside ``box``: the network never ran outside the body crop, so alpha is "not looked at"
        there rather than the crop's edge values stretched out as streaks.

        All gates go back as one tensor, and only the box's voxels are resampled (the body is often
        about half of a CT's field of view). The full-size work is two passes: the resampling
        writes NIfTI voxel order directly, and one converting copy into the zeroed output rounds to
        the codes (the maps are scaled to code units on the small network grid; linear
        interpolation of values in [0, 255] stays within it, so truncating ``x + 0.5`` rounds half up).
        """
        if not maps:
            return {}
        stacked = torch.cat([alpha[0] for alpha in maps.values()]).float()
        if box is None:  # not axis-aligned: Invertd, which leaves 0 outside the crop itself
            everywhere = alpha_codes(self._to_input_grid(image, stacked))
            return {gate: in_nifti_order(codes) for gate, codes in zip(maps, everywhere)}
        # Clamped on the small grid: a wrapped uint8 code must never come out of a bad value.
        scaled = self._to_input_grid(image, stacked.mul_(ALPHA_STEPS).clamp_(0, ALPHA_STEPS), box, nifti_order=True)
        # (gate, Z, Y, X) in C order: each gate's [i].T is an (X, Y, Z) Fortran-ordered volume.
        codes = np.zeros((len(maps), *reversed(shape)), dtype=np.uint8)
        target = torch.from_numpy(codes).permute(0, 3, 2, 1)[(slice(None), *box)]
        target.copy_(scaled.add_(0.5))  # float -> uint8 truncates
        return {gate: codes[i].T for i, gate in enumerate(maps)}

    def _probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Softmax ``(1, K, *S)`` (flip-averaged with TTA) and gate maps ``(1, 1, *S)``."""
        if self.settings.attention:
            logits, maps = predict_with_attention(self.net, x, self.window)
        else:
            logits, maps = predict_logits(self.net, x, self.window), {}
        probs = torch.softmax(logits.float(), 1)
        if self.settings.tta:
            dims = [2 + a for a in self.flip_axes]  # (B, C, *S): spatial axis a is tensor dim 2 + a
            flips = [axes for n in range(1, len(dims) + 1) for axes in itertools.combinations(dims, n)]
            for axes in flips:
                flipped = predict_logits(self.net, torch.flip(x, axes), self.window)
                probs += torch.flip(torch.softmax(flipped.float(), 1), axes)
            probs /= 1 + len(flips)
        return probs.cpu(), {k: v.float().cpu() for k, v in maps.items()}

    def _to_input_grid(
        self, image: MetaTensor, volume: torch.Tensor, box: Sequence[slice] | None = None, nifti_order: bool = False
    ) -> torch.Tensor:
        """Undo crop, resampling and reorientation: ``(C, *S_net)`` -> ``(C, *S_input)``, or only the
        input voxels of ``box`` (separable fast path; ``Invertd`` when the grids are not axis-aligned,
        which never happens with a ``box``: :func:`network_box` gives none then). ``nifti_order``:
        see :func:`~attnunet.inference.regrid.to_input_grid` (the ``Invertd`` path ignores it)."""
        fast = to_input_grid(
            volume.float(),
            image.affine.numpy(),
            image.meta["original_affine"],
            image.meta["spatial_shape"],
            box,
            nifti_order,
        )
        if fast is not None:
            return fast
        pred = MetaTensor(volume, meta=dict(image.meta))
        return self.invert({IMAGE: image, PRED: pred})[PRED].float()

    def _autocast(self):
        if self.settings.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()
