"""The checkpoint's preprocessing of a NIfTI CT, read slab by slab: the scan is never whole in memory.

MONAI's pipeline (:func:`attnunet.data.transforms.preprocessing`) loads the whole scan as float32,
reorients it with a copy and lets ``Spacingd`` resample a float64 copy of it: about 16 bytes per
input voxel at its peak. The network grid here is the same one, worked out by MONAI's own
``Orientation`` and ``Spacing`` from the header alone (lazily, on a stand-in with no voxels); its
values are filled by reading the file in slabs along its last storage axis (the contiguous one on
disk) and interpolating each slab as ``Spacingd`` does for axis-aligned grids: linear, in float64,
edge values beyond the scan (its ``bilinear``/``border`` default), cast to float32 at the end. Only
a few input planes are held at a time. The body crop and intensity steps then run as MONAI
transforms on the small network grid. Inputs this does not cover (DICOM series, grids not
axis-aligned, a run that keeps the input for a preview) go through MONAI's pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai import transforms as mt
from monai.data import MetaTensor

from attnunet.data.transforms import IMAGE, InspectHeaderd, PreprocessingSpec, all_finite, preprocessing
from attnunet.errors import AttnUNetError
from attnunet.inference.regrid import axis_map, interpolate_axis
from attnunet.io.naming import is_nifti
from attnunet.io.voxel_prefetch import image_in_memory, take_image

# Input voxels read per slab (a 512 x 512 scan: 32 planes, 32 MB as float32).
SLAB_VOXELS = 2**23


def network_geometry(spec: PreprocessingSpec, affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple]:
    """The network grid's affine and shape before the body crop, as the checkpoint's ``Orientationd``
    and ``Spacingd`` would make them for a scan of ``shape`` and ``affine``: computed by MONAI's
    transforms run lazily on a stand-in whose voxels are one broadcast zero (no memory)."""
    standin = MetaTensor(torch.zeros(()).expand(1, *shape), affine=torch.as_tensor(affine, dtype=torch.float64))
    out = mt.Orientation(axcodes=spec.orientation, labels=None, lazy=True)(standin)
    if spec.spacing is not None:
        out = mt.Spacing(pixdim=spec.spacing, lazy=True)(out)
    return np.asarray(out.peek_pending_affine(), dtype=np.float64), tuple(int(n) for n in out.peek_pending_shape())


def _slabs(image: Any, path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """``(first plane, float32 (X, Y, n))`` slabs along the last storage axis, in file order, with
    nibabel's scaling (the values MONAI's loader gets); NaN or infinite voxels are refused."""
    x, y, z = image.shape[:3]
    step = max(1, SLAB_VOXELS // (x * y))
    for start in range(0, z, step):
        raw = np.asanyarray(image.dataobj[:, :, start : start + step]).reshape(x, y, -1)
        slab = np.array(raw, dtype=np.float32)  # a writable copy: torch views it
        if not all_finite(torch.from_numpy(slab)):
            raise AttnUNetError("image contains NaN or infinite voxels", path)
        yield start, slab


def _resample_on_the_fly(
    image: Any, path: Path, mapping: list[tuple[int, float, float]], net_shape: tuple[int, ...]
) -> torch.Tensor:
    """Float32 ``net_shape`` network-grid volume from the scan's slabs. ``mapping``: per network axis,
    ``(storage axis, scale, offset)``. The two in-plane axes are interpolated per slab; a network
    plane along the slab axis is made as soon as the two storage planes it lies between are read."""
    by_storage = {s: (q, scale, offset) for q, (s, scale, offset) in enumerate(mapping)}
    n_planes = int(image.shape[2])
    q_z, scale_z, offset_z = by_storage[2]
    along_z = (torch.arange(net_shape[q_z], dtype=torch.float64) * scale_z + offset_z).clamp(0, n_planes - 1)
    lower = along_z.floor().long()
    upper = (lower + 1).clamp(max=n_planes - 1)
    out = torch.empty(net_shape, dtype=torch.float32)
    # Slabs are handled plane-major, (n, Y, X) (a transposed view of nibabel's Fortran-ordered
    # slab): the in-plane passes then gather along contiguous rows, and the slab-axis pass whole planes.
    stored = out.permute(q_z, by_storage[1][0], by_storage[0][0])
    todo = torch.ones(net_shape[q_z], dtype=torch.bool)
    held: torch.Tensor | None = None  # in-plane-interpolated storage planes [held_from, held_from + n)
    held_from = 0
    for start, slab in _slabs(image, path):
        planes = torch.from_numpy(slab.T).double()
        for dim in (0, 1):
            q, scale, offset = by_storage[dim]
            coords = (torch.arange(net_shape[q], dtype=torch.float64) * scale + offset).clamp(0, image.shape[dim] - 1)
            planes = interpolate_axis(planes, 2 - dim, coords)
        held = planes if held is None else torch.cat([held, planes])
        held_end = start + slab.shape[2]
        ready = todo & (upper < held_end)
        if ready.any():
            ks = torch.nonzero(ready).flatten()
            stored[ks] = interpolate_axis(held, 0, along_z[ks] - held_from).float()
            todo &= ~ready
        if todo.any():  # keep only the planes a network plane still needs (none may be read yet)
            keep_from = min(int(lower[todo].min()), held_end)
            held, held_from = held[keep_from - held_from :], keep_from
    return out


def read_streamed(spec: PreprocessingSpec, image_path: str | Path) -> dict[str, MetaTensor] | None:
    """``{"image": (1, X, Y, Z) network input}`` of a NIfTI file, equal to what
    ``preprocessing(spec, keys=["image"])`` gives (to float rounding of the float64 resampling), read
    slab by slab; ``None`` when this file needs MONAI's pipeline (not NIfTI, or grids not
    axis-aligned). Headers are checked as the pipeline checks them."""
    path = Path(image_path)
    if not is_nifti(path):
        return None
    InspectHeaderd([IMAGE])({IMAGE: str(path)})
    # The file's own bytes are held while it is read (2 bytes per voxel for int16): gzip decompressed
    # in one call (or by the CLI's prefetch, beside the imports), several times faster than
    # nibabel's block-wise reads of slabs.
    image = take_image(path)
    image = image_in_memory(path) if image is None else image
    affine = np.asarray(image.affine, dtype=np.float64)
    shape = tuple(int(n) for n in image.shape[:3])
    net_affine, net_shape = network_geometry(spec, affine, shape)
    mapping = axis_map(affine, net_affine)  # per network axis: storage coordinate = scale * index + offset
    if mapping is None:
        return None
    volume = _resample_on_the_fly(image, path, mapping, net_shape)
    meta = {
        "filename_or_obj": str(path),
        "original_affine": affine,
        "spatial_shape": np.asarray(shape),
        "original_channel_dim": "no_channel",
    }
    data = {IMAGE: MetaTensor(volume[None], affine=torch.as_tensor(net_affine), meta=meta)}
    return mt.Compose(steps_after_resampling(spec))(data)


def steps_after_resampling(spec: PreprocessingSpec) -> list[mt.MapTransform]:
    """The checkpoint's preprocessing steps after reorientation and resampling (body crop, intensity),
    taken from the one definition so that the two paths cannot drift apart."""
    steps = preprocessing(spec, keys=[IMAGE])
    last = max(i for i, step in enumerate(steps) if isinstance(step, mt.Orientationd | mt.Spacingd))
    return steps[last + 1 :]
