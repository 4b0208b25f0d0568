"""The one preprocessing definition used by training, evaluation and inference.

A :class:`PreprocessingSpec` is plain data stored in every checkpoint; :func:`preprocessing`
turns it into MONAI dictionary transforms. Inference composes the same list and inverts it with
the recorded operations to put predictions back on the input grid (``inference/regrid.py``, or
``monai.transforms.Invertd`` where that does not apply).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai import transforms as mt
from monai.transforms.utils import map_binary_to_indices

from attnunet.errors import AttnUNetError
from attnunet.io.dicom import DicomSeriesReader, check_dicom_series, is_dicom_file
from attnunet.io.naming import is_nifti
from attnunet.io.nifti_reader import NiftiReader

IMAGE, LABEL = "image", "label"
VAL_WEIGHT = "val_weight"  # validation items under DDP: 0 for a rank's padding repeats


@dataclass(frozen=True)
class PreprocessingSpec:
    """How a CT volume becomes network input.

    Attributes:
        spacing: target voxel size in mm per RAS axis (``None`` keeps the input spacing).
        orientation: target axis codes.
        intensity_window: HU range mapped linearly to [0, 1] and clipped.
        normalization: ``window`` (the [0, 1] window only) or ``zscore`` (then zero mean, unit
            variance over the body-cropped volume, as Oktay et al. 2018 normalise CT).
        crop_foreground: crop to the body (voxels above ``body_threshold_hu``) plus ``margin``.
        body_threshold_hu: HU above which a voxel counts as body, not air.
        margin: voxels kept around the body box.
    """

    spacing: tuple[float, ...] | None = (2.0, 2.0, 2.0)
    orientation: str = "RAS"
    intensity_window: tuple[float, float] = (-175.0, 250.0)
    normalization: str = "window"
    crop_foreground: bool = True
    body_threshold_hu: float = -500.0
    margin: int = 4

    def __post_init__(self) -> None:
        lo, hi = self.intensity_window
        if not lo < hi:
            raise ValueError(f"intensity_window must be (low, high) with low < high, got {self.intensity_window}")
        if self.normalization not in ("window", "zscore"):
            raise ValueError(f"normalization must be window or zscore, got {self.normalization!r}")
        if self.spacing is not None and any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessingSpec:
        """From plain data (a config node, a checkpoint's description); missing fields take the
        defaults, unknown ones are refused (a misspelt setting must not be ignored)."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown preprocessing settings {unknown}; known: {[f.name for f in fields(cls)]}")
        spacing = d.get("spacing", cls.spacing)
        return cls(
            spacing=None if spacing is None else tuple(float(s) for s in spacing),
            orientation=str(d.get("orientation", cls.orientation)),
            intensity_window=tuple(float(v) for v in d.get("intensity_window", cls.intensity_window)),  # type: ignore[arg-type]
            normalization=str(d.get("normalization", cls.normalization)),
            crop_foreground=bool(d.get("crop_foreground", cls.crop_foreground)),
            body_threshold_hu=float(d.get("body_threshold_hu", cls.body_threshold_hu)),
            margin=int(d.get("margin", cls.margin)),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spacing"] = None if self.spacing is None else list(self.spacing)
        d["intensity_window"] = list(self.intensity_window)
        return d


@dataclass(frozen=True)
class BodyMask:
    """``select_fn`` for ``CropForegroundd``: voxels above a HU threshold (picklable for workers)."""

    threshold_hu: float

    def __call__(self, image: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        return image > self.threshold_hu


def load_images(keys: Sequence[str]) -> mt.LoadImaged:
    """MONAI's loader with attnunet's NIfTI reader (nibabel's, C-ordered faster) and DICOM series
    reader, which checks the series geometry (MONAI's PydicomReader orders slices by
    InstanceNumber). Readers registered later are tried first: the DICOM one claims only folders,
    and its one-line errors reach the user unwrapped."""
    loader = mt.LoadImaged(keys, image_only=True)
    loader.register(NiftiReader())
    loader.register(DicomSeriesReader())
    return loader


MAX_VOXELS = 2**31  # a 1290^3 volume; larger headers are almost surely corrupt, and would not fit anyway


class InspectHeaderd(mt.MapTransform):
    """Check NIfTI headers before any voxel is read: dimensionality, size, voxel sizes and affine.

    Reading a corrupt header's data could allocate terabytes or divide by a zero voxel size; MONAI's
    loader has no such guard. Files nibabel cannot parse at all are left to the loader (and its
    error is reported with the file name).
    """

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        for key in self.keys:
            path = str(data[key])
            if Path(path).is_dir() or is_dicom_file(Path(path)):
                check_dicom_series(Path(path))
                continue
            if not is_nifti(path):
                continue
            try:
                img = nib.load(path)
            except Exception as e:  # noqa: BLE001 - nibabel raises many types for broken files
                raise AttnUNetError(f"unreadable NIfTI ({type(e).__name__})", path) from None
            dtype = img.get_data_dtype()
            if dtype.fields is not None or dtype.kind not in "biuf":
                raise AttnUNetError(f"voxel type {_voxel_type(img)} is not a real scalar intensity", path)
            shape = tuple(int(n) for n in img.shape)
            spatial = shape[:3] if len(shape) > 3 and all(n == 1 for n in shape[3:]) else shape
            if len(spatial) != 3 or min(spatial) < 1:
                raise AttnUNetError(f"expected a 3D volume, got shape {shape}", path)
            if np.prod(spatial, dtype=np.float64) > MAX_VOXELS:
                raise AttnUNetError(f"volume of shape {shape} is too large (more than {MAX_VOXELS} voxels)", path)
            with nib.openers.ImageOpener(path) as f:  # nibabel silently turns 0 voxel sizes into 1
                raw = img.header.__class__.from_fileobj(f, check=False)
            zooms = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
            if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
                raise AttnUNetError(f"voxel sizes must be positive, got {zooms.tolist()}", path)
            affine = np.asarray(img.affine, dtype=np.float64)
            if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
                raise AttnUNetError("affine is not invertible", path)
        return data


def _voxel_type(img: nib.Nifti1Image) -> str:
    """The header's voxel type as NIfTI names it (``complex64``, ``RGB``), else numpy's name."""
    code = int(img.header.get("datatype", 0)) if "datatype" in img.header else 0
    label = nib.nifti1.data_type_codes.label.get(code) if code else None
    return str(label or img.get_data_dtype())


class DropTrailingSingletonsd(mt.MapTransform):
    """``(X, Y, Z, 1[, 1 ...])`` -> ``(X, Y, Z)``: a 3D volume stored with singleton time/vector axes
    (the header check already refused any non-singleton axis beyond the third)."""

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        for key in self.keys:
            while data[key].ndim > 3 and data[key].shape[-1] == 1:
                data[key] = data[key][..., 0]
        return data


def all_finite(volume: torch.Tensor) -> bool:
    """Whether no voxel is NaN or infinite. Any NaN or Inf makes the sum non-finite, so a finite
    sum, one fast reduction, settles it; only a non-finite one, which can also come from overflow,
    is checked voxel by voxel (``torch.isfinite``, much slower:
    docs/explanation/inference-path.md#what-each-choice-buys-measured)."""
    return bool(torch.isfinite(volume.sum())) or bool(torch.isfinite(volume).all())


class ValidateVolumed(mt.MapTransform):
    """Reject volumes the pipeline cannot use, naming the file: not 3D, NaN/Inf voxels, label
    values that are not integers in ``0..num_labels-1``.

    MONAI has no such check; without it these inputs fail later with opaque shape errors or
    silently train on garbage.
    """

    def __init__(self, keys: Sequence[str], num_labels: int | None) -> None:
        super().__init__(keys)
        self.num_labels = num_labels

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        image_key, *label_keys = self.keys
        image = data[image_key]
        where = _source(image)
        if image.ndim != 3:
            raise AttnUNetError(f"expected a 3D volume, got shape {tuple(image.shape)}", where)
        if not all_finite(torch.as_tensor(image)):
            raise AttnUNetError("image contains NaN or infinite voxels", where)
        for key in label_keys:
            label = torch.as_tensor(data[key])
            src = _source(data[key])
            if label.ndim != 3:
                raise AttnUNetError(f"expected a 3D label map, got shape {tuple(label.shape)}", src)
            values = torch.unique(label)
            if not bool((values == values.round()).all()):
                raise AttnUNetError("label has non-integer values", src)
            if self.num_labels is not None and (values.min() < 0 or values.max() >= self.num_labels):
                raise AttnUNetError(
                    f"label values {values.tolist()[:10]} outside the label map 0..{self.num_labels - 1}", src
                )
        return data


class SameGridd(mt.MapTransform):
    """Labels must lie on the image's voxel grid: after reorienting both (so a label stored in
    another axis order or direction still counts), the same shape and affine within 1e-3 mm.

    Without this check a misregistered label trains silently on the wrong voxels.
    """

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        image_key, *label_keys = self.keys
        image = data[image_key]
        for key in label_keys:
            label, src = data[key], _source(data[key])
            if tuple(label.shape[1:]) != tuple(image.shape[1:]):
                raise AttnUNetError(
                    f"label grid {tuple(label.shape[1:])} differs from the image grid {tuple(image.shape[1:])}", src
                )
            if not np.allclose(_affine(label), _affine(image), atol=1e-3):
                raise AttnUNetError("label affine differs from the image affine (not the same voxel grid)", src)
        return data


def _source(t: Any) -> str:
    return str(getattr(t, "meta", {}).get("filename_or_obj", "<array>"))


def _affine(t: Any) -> np.ndarray:
    return np.asarray(getattr(t, "affine", np.eye(4)), dtype=np.float64)


def loading(
    keys: Sequence[str],
    orientation: str,
    num_labels: int | None = None,
    label_lookup: dict[int, int] | None = None,
    keep_input_as: str | None = None,
    maps: Sequence[str] = (),
) -> list[mt.MapTransform]:
    """Inspect header -> load -> drop singleton axes -> validate -> merge labels -> channel first ->
    reorient -> same grid.

    The first steps of :func:`preprocessing`, also used on their own where raw HU on the input's
    own spacing are wanted (the dataset fingerprint). Output: ``(1, X, Y, Z)`` MetaTensors in
    ``orientation``, image in HU, labels checked against ``num_labels`` and relabelled by
    ``label_lookup`` when it merges classes. ``keep_input_as``: also keep the image as read and
    checked, ``(X, Y, Z)`` in HU and storage order, under that key (inference previews reuse it
    instead of reading the file again). ``maps``: further integer maps on the label's grid (the
    phantoms' tissue maps), read, checked and reoriented like a label but kept out of the label
    map's value check and relabelling.
    """
    keys, maps = list(keys), list(maps)
    every = keys + maps
    steps: list[mt.MapTransform] = [
        InspectHeaderd(every),
        load_images(every),
        DropTrailingSingletonsd(every),
        ValidateVolumed(keys, num_labels),
    ]
    if maps:
        steps.append(ValidateVolumed([keys[0], *maps], None))
    if keep_input_as is not None:
        steps.append(mt.CopyItemsd(keys[0], names=keep_input_as))
    if label_lookup and len(keys) > 1 and any(k != v for k, v in label_lookup.items()):
        old, new = zip(*sorted(label_lookup.items()), strict=True)
        steps.append(mt.MapLabelValued(keys[1:], orig_labels=list(old), target_labels=list(new)))
    steps += [
        mt.EnsureChannelFirstd(every, channel_dim="no_channel"),
        mt.Orientationd(every, axcodes=orientation, labels=None),
    ]
    if len(every) > 1:
        steps.append(SameGridd(every))
    return steps


def preprocessing(
    spec: PreprocessingSpec,
    keys: Sequence[str] = (IMAGE, LABEL),
    num_labels: int | None = None,
    label_lookup: dict[int, int] | None = None,
    keep_input_as: str | None = None,
    maps: Sequence[str] = (),
) -> list[mt.MapTransform]:
    """Inspect header -> load -> validate -> merge labels -> channel first -> reorient -> resample ->
    crop to body -> HU window (``keep_input_as``: see :func:`loading`).

    ``keys`` must start with the image; every other key is treated as a label map (nearest
    neighbour resampling, values checked against ``num_labels``, then relabelled by
    ``label_lookup`` when it merges classes). Output: ``image`` float32
    ``(1, X, Y, Z)`` in [0, 1] and labels ``(1, X, Y, Z)`` uint8, as MetaTensors that record the
    applied operations (so inference can map predictions back to the input grid). ``maps``
    (see :func:`loading`) are resampled and cropped as labels are, and end ``(1, X, Y, Z)`` uint8.
    """
    keys = list(keys)
    every = keys + list(maps)
    modes = ["bilinear"] + ["nearest"] * (len(every) - 1)
    steps = loading(keys, spec.orientation, num_labels, label_lookup, keep_input_as, maps)
    if spec.spacing is not None:
        steps.append(mt.Spacingd(every, pixdim=spec.spacing, mode=modes))
    if spec.crop_foreground:
        steps.append(
            mt.CropForegroundd(
                every,
                source_key=keys[0],
                select_fn=BodyMask(spec.body_threshold_hu),
                margin=spec.margin,
                allow_smaller=True,
            )
        )
    lo, hi = spec.intensity_window
    steps.append(mt.ScaleIntensityRanged(keys[0], a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
    if spec.normalization == "zscore":
        steps.append(mt.NormalizeIntensityd(keys[0]))
    steps.append(mt.EnsureTyped(keys[0], dtype=torch.float32))
    if len(every) > 1:
        steps.append(mt.EnsureTyped(every[1:], dtype=torch.uint8))
    return steps


@dataclass(frozen=True)
class AugmentationSpec:
    """Random training-time transforms (all probabilities per sample)."""

    affine_prob: float = 0.2
    rotate_degrees: float = 15.0
    scale_range: float = 0.1
    flip_prob: float = 0.0
    intensity_prob: float = 0.5
    noise_prob: float = 0.15


def patch_dims(patch_size: Sequence[int]) -> int:
    """Spatial dimensions of a training patch: 2 for axial slices (``(H, W, 1)``), else 3."""
    return 2 if len(patch_size) == 3 and patch_size[-1] == 1 else 3


class PositiveIndicesd(mt.MapTransform):
    """``<key>_fg_indices`` / ``<key>_bg_indices``: flat indices of the voxels whose label is / is not
    one of ``values``. MONAI's ``FgBgToIndicesd`` counts every non-zero label as foreground; this
    picks which classes positive patches centre on."""

    def __init__(self, key: str, values: Sequence[int]) -> None:
        super().__init__([key])
        self.values = [int(v) for v in values]

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            positive = torch.isin(torch.as_tensor(d[key]).as_subclass(torch.Tensor), torch.tensor(self.values))
            d[f"{key}_fg_indices"], d[f"{key}_bg_indices"] = map_binary_to_indices(positive)
        return d


def training_sampling(
    patch_size: Sequence[int],
    samples_per_volume: int,
    positive_fraction: float,
    aug: AugmentationSpec,
    maps: Sequence[str] = (),
    patch_steps: Callable[[int], Sequence[mt.MapTransform]] | None = None,
    positive_labels: Sequence[int] | None = None,
) -> list[mt.MapTransform]:
    """Patch sampling (foreground-centred with ``positive_fraction``) and augmentation.

    Appended after :func:`preprocessing`; everything before this is deterministic and cached.
    A ``patch_size`` ending in 1 (e.g. ``(160, 160, 1)``) samples axial slices for a 2D network:
    patches are then ``(1, H, W)`` instead of ``(1, H, W, D)``. ``maps`` (see :func:`loading`) are
    cropped and moved with the label; ``patch_steps(ndim)`` gives steps run on each patch after the
    geometric augmentation and before the intensity one (the phantoms' per-patch rendering), after
    which the maps are dropped. ``positive_labels``: the label values a positive patch centres on
    (``None``: every foreground value), so context classes such as the organs around the pancreas
    do not take the positive patches from it.
    """
    keys = [IMAGE, LABEL, *maps]
    pos = positive_fraction
    fg, bg = f"{LABEL}_fg_indices", f"{LABEL}_bg_indices"
    steps: list[mt.MapTransform] = [
        mt.SpatialPadd(keys, spatial_size=patch_size),
        # Indices are computed once here (cached with the volume) instead of at every crop.
        mt.FgBgToIndicesd(LABEL, fg_postfix="_fg_indices", bg_postfix="_bg_indices")
        if positive_labels is None
        else PositiveIndicesd(LABEL, positive_labels),
        mt.RandCropByPosNegLabeld(
            keys,
            label_key=LABEL,
            spatial_size=patch_size,
            pos=pos,
            neg=1.0 - pos,
            num_samples=samples_per_volume,
            fg_indices_key=fg,
            bg_indices_key=bg,
        ),
        mt.DeleteItemsd([fg, bg]),
    ]
    dims = patch_dims(patch_size)
    if dims == 2:
        steps.append(mt.SqueezeDimd(keys, dim=3))
    if aug.affine_prob > 0:
        steps.append(
            mt.RandAffined(
                keys,
                prob=aug.affine_prob,
                rotate_range=[np.deg2rad(aug.rotate_degrees)] * (1 if dims == 2 else 3),
                scale_range=[aug.scale_range] * dims,
                mode=["bilinear"] + ["nearest"] * (len(keys) - 1),
                padding_mode="zeros",
            )
        )
    if aug.flip_prob > 0:
        steps += [mt.RandFlipd(keys, prob=aug.flip_prob, spatial_axis=a) for a in range(dims)]
    if patch_steps is not None:
        steps += list(patch_steps(dims))
    if maps:
        steps.append(mt.DeleteItemsd(list(maps)))
    if aug.intensity_prob > 0:
        steps += [
            mt.RandScaleIntensityd(IMAGE, factors=0.1, prob=aug.intensity_prob),
            mt.RandShiftIntensityd(IMAGE, offsets=0.05, prob=aug.intensity_prob),
        ]
    if aug.noise_prob > 0:
        steps.append(mt.RandGaussianNoised(IMAGE, prob=aug.noise_prob, std=0.02))
    steps.append(mt.EnsureTyped([IMAGE, LABEL], dtype=[torch.float32, torch.long], track_meta=False))
    return steps
