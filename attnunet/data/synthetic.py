"""Synthetic pancreas-style abdominal CT phantoms, written as an MSD-layout NIfTI dataset.

Each case is an axial abdominal slab in Hounsfield units: body outline with subcutaneous fat and
muscle wall, visceral fat, spine, aorta, IVC, liver, spleen, kidneys, stomach, a duodenal C-loop,
small-bowel loops with gas and fluid, a splenic vein, and a lobulated, curved pancreas from head to
tail (label 1), optionally with a small hypodense lesion (label 2). The pancreas shares its HU range
with liver, spleen, bowel wall and vessels, so no single threshold isolates it; shape and context
do. Voxel spacing is anisotropic and every case is stored in one of several orientations, so
training exercises the real reorientation and resampling path. Generation is deterministic in the
seed: case ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from attnunet.data.dicom import write_series

LABELS = {"0": "background", "1": "pancreas", "2": "lesion"}
# Stored orientations: RAS, radiological LPS, mixed flips and permuted (through-plane first) axes.
ORIENTATIONS = ("RAS", "LPS", "LAS", "RPI", "SRA", "PLS", "LPI", "ASR")
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of one case in canonical RAS order: world coordinates (mm) per axis."""

    x: np.ndarray  # (X, 1, 1), patient right is +x
    y: np.ndarray  # (1, Y, 1), anterior is +y
    z: np.ndarray  # (1, 1, Z), superior is +z
    spacing: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.x.shape[0], self.y.shape[1], self.z.shape[2])

    def affine(self) -> np.ndarray:
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = [self.x.flat[0], self.y.flat[0], self.z.flat[0]]
        return aff


def make_case(seed: int, index: int, lesions: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate one case in canonical RAS voxel order.

    Returns:
        image ``(X, Y, Z)`` int16 in HU, label ``(X, Y, Z)`` uint8 (0/1, 2 with lesions) and the
        4x4 voxel-to-world affine.
    """
    rng = np.random.default_rng([seed, index, GENERATOR_VERSION])
    in_plane = rng.uniform(1.3, 2.0)
    spacing = (in_plane, in_plane, float(rng.choice([2.0, 2.5, 3.0])))
    fov = (rng.uniform(250, 290), rng.uniform(190, 220), rng.uniform(120, 150))
    axes = [(np.arange(int(f / s)) - (int(f / s) - 1) / 2) * s + rng.uniform(-15, 15) for f, s in zip(fov, spacing)]
    geo = Geometry(
        axes[0].reshape(-1, 1, 1).astype(np.float32),
        axes[1].reshape(1, -1, 1).astype(np.float32),
        axes[2].reshape(1, 1, -1).astype(np.float32),
        spacing,
    )
    hu, label = _paint_abdomen(geo, rng, lesions)
    image = _acquire(hu, geo, rng)
    return image, label, geo.affine()


def _paint_abdomen(geo: Geometry, rng: np.random.Generator, lesions: bool) -> tuple[np.ndarray, np.ndarray]:
    """Paint tissue HU values and the label map on the canonical grid."""
    x, y, z = geo.x, geo.y, geo.z
    shape = geo.shape
    hu = np.full(shape, -1000.0, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    cx, cy = rng.uniform(-8, 8), rng.uniform(-8, 8)
    ax, ay = rng.uniform(118, 138), rng.uniform(88, 104)
    taper = 1 + 0.0006 * z  # the abdomen widens slightly towards the ribs

    def ellipse(a: float, b: float) -> np.ndarray:
        return ((x - cx) / (a * taper)) ** 2 + ((y - cy) / (b * taper)) ** 2 <= 1

    fat = rng.uniform(10, 25)
    hu[np.broadcast_to(ellipse(ax, ay), shape)] = rng.normal(-100, 8)
    hu[np.broadcast_to(ellipse(ax - fat, ay - fat), shape)] = rng.normal(50, 5)  # abdominal wall
    inner = np.broadcast_to(ellipse(ax - fat - 8, ay - fat - 8), shape)
    hu[inner] = rng.normal(-90, 6)  # visceral fat

    spine_y = cy - (ay - fat) + rng.uniform(38, 46)

    def paint(mask: np.ndarray, value: float) -> None:
        hu[mask & inner] = value

    # Organs and vessels (positions relative to the spine and body; values vary per case).
    paint(_ellipsoid(geo, (cx + rng.uniform(75, 90), cy + rng.uniform(-5, 15), 40), (62, 72, 70)), rng.normal(108, 8))
    paint(_ellipsoid(geo, (cx - rng.uniform(80, 95), spine_y + 20, 40), (26, 45, 45)), rng.normal(115, 8))
    for side in (1, -1):
        kz = rng.uniform(-25, 5)
        kc = (cx + side * rng.uniform(58, 70), spine_y + 12, kz)
        paint(_ellipsoid(geo, kc, (26, 22, 50)), rng.normal(185, 12))
        paint(_ellipsoid(geo, kc, (13, 10, 30)), rng.normal(60, 8))
    stomach = _ellipsoid(geo, (cx - rng.uniform(40, 60), cy + rng.uniform(20, 45), 45), (42, 30, 38))
    paint(stomach, 55)
    paint(_ellipsoid(geo, (cx - 50, cy + 32, 45), (36, 24, 32)) & stomach, rng.choice([10.0, -900.0]))
    for _ in range(int(rng.integers(8, 15))):
        _paint_bowel_loop(hu, geo, rng, inner, (cx, cy, ax, ay))
    spine = _ellipsoid(geo, (cx, spine_y, 0), (19, 17, 1e4))
    hu[spine] = rng.normal(650, 60)
    hu[_ellipsoid(geo, (cx, spine_y, 0), (15, 13, 1e4))] = rng.normal(240, 30)
    hu[_ellipsoid(geo, (cx, spine_y - 27, 0), (8, 7, 1e4))] = 20  # spinal canal
    for side in (1, -1):
        hu[_ellipsoid(geo, (cx + side * 38, spine_y - 25, 0), (20, 22, 1e4))] = rng.normal(55, 4)
    aorta = (cx - rng.uniform(5, 12), spine_y + 27)
    contrast = rng.uniform(160, 260)
    hu[_ellipsoid(geo, (*aorta, 0), (11, 11, 1e4))] = contrast
    hu[_ellipsoid(geo, (cx + rng.uniform(20, 28), spine_y + 25, 0), (11, 9, 1e4))] = contrast * 0.7

    pancreas, curve = _pancreas(geo, rng, aorta, spine_y)
    duodenum_r = rng.uniform(9, 12)
    _paint_tube(hu, geo, curve[:12] + np.array([25, 8, -10]), duodenum_r, 60.0, rng.choice([15.0, -900.0]), inner)
    vein = curve[8:] + np.array([0.0, -1, 0]) * (curve_radius(len(curve))[8:, None] + 5)
    _paint_tube(hu, geo, vein, 4.5, contrast * 0.65, contrast * 0.65, inner)
    tissue = rng.normal(95, 8)
    texture = _smooth_noise(shape, rng, sigma_vox=1.0)
    hu[pancreas] = tissue + 12 * texture[pancreas]
    hu[pancreas & (texture > 1.6)] = -40  # fatty interdigitation between lobules
    label[pancreas] = 1
    if lesions and rng.random() < 0.7:
        c = curve[int(rng.integers(5, 35))]
        lesion = _ellipsoid(geo, tuple(c), (rng.uniform(5, 10),) * 3) & pancreas
        hu[lesion] = tissue - rng.uniform(35, 55)
        label[lesion] = 2
    return hu, label


def curve_radius(n: int) -> np.ndarray:
    """Nominal pancreas radius (mm) along its centre line, head (t=0) to tail (t=1)."""
    t = np.linspace(0, 1, n)
    return 14 - 7 * t


def _pancreas(
    geo: Geometry, rng: np.random.Generator, aorta: tuple[float, float], spine_y: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lobulated curved pancreas mask and its centre line ``(N, 3)`` from head to tail."""
    z0 = rng.uniform(-10, 15)
    head = np.array([aorta[0] + rng.uniform(35, 50), aorta[1] + rng.uniform(12, 24), z0 - rng.uniform(5, 15)])
    neck = np.array([aorta[0] + rng.uniform(-5, 10), aorta[1] + rng.uniform(22, 32), z0])
    tail = np.array([aorta[0] - rng.uniform(60, 80), spine_y + rng.uniform(10, 30), z0 + rng.uniform(8, 25)])
    t = np.linspace(0, 1, 48)[:, None]
    curve = (1 - t) ** 2 * head + 2 * (1 - t) * t * neck + t**2 * tail  # quadratic Bezier
    radius = curve_radius(len(curve)) * rng.uniform(0.8, 1.2)
    scale = rng.uniform(0.15, 0.3)

    lo = np.maximum(_to_index(geo, curve.min(0) - 25), 0)
    hi = np.minimum(_to_index(geo, curve.max(0) + 25) + 1, geo.shape)
    mask = np.zeros(geo.shape, dtype=bool)
    if np.any(hi <= lo):
        return mask, curve
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    px, py, pz = np.broadcast_arrays(geo.x[box[0]], geo.y[:, box[1]], geo.z[:, :, box[2]])
    points = np.stack([px, py, pz], -1).reshape(-1, 3)
    dist = np.linalg.norm(points[:, None, :] - curve[None], axis=-1)
    nearest = dist.argmin(1)
    lobules = _smooth_noise(px.shape, rng, sigma_vox=5.0 / min(geo.spacing)).reshape(-1)
    inside = dist[np.arange(len(points)), nearest] <= radius[nearest] * (1 + scale * lobules)
    mask[box] = inside.reshape(px.shape)
    return mask, curve


def _paint_bowel_loop(
    hu: np.ndarray, geo: Geometry, rng: np.random.Generator, inner: np.ndarray, body: tuple[float, ...]
) -> None:
    cx, cy, ax, ay = body
    start = np.array([cx + rng.uniform(-0.6, 0.6) * ax, cy + rng.uniform(0.0, 0.6) * ay, rng.uniform(-70, 30)])
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    bend = rng.normal(size=3) * 0.02
    steps = np.arange(int(rng.integers(6, 14)))[:, None] * 6.0
    path = start + steps * direction + steps**2 * bend
    content = rng.choice([-900.0, 20.0, 35.0])
    _paint_tube(hu, geo, path, rng.uniform(8, 14), 60.0, content, inner)


def _paint_tube(
    hu: np.ndarray, geo: Geometry, path: np.ndarray, radius: float, wall: float, lumen: float, inner: np.ndarray
) -> None:
    """Paint a tube (wall 3 mm) along ``path (N, 3)`` inside the abdominal cavity."""
    lo = np.maximum(_to_index(geo, path.min(0) - radius - 2), 0)
    hi = np.minimum(_to_index(geo, path.max(0) + radius + 2) + 1, geo.shape)
    if np.any(hi <= lo):
        return
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    px, py, pz = np.broadcast_arrays(geo.x[box[0]], geo.y[:, box[1]], geo.z[:, :, box[2]])
    points = np.stack([px, py, pz], -1).reshape(-1, 3)
    dist = np.linalg.norm(points[:, None, :] - path[None], axis=-1).min(1).reshape(px.shape)
    region = hu[box]
    cavity = inner[box]
    region[(dist <= radius) & cavity] = wall
    region[(dist <= radius - 3) & cavity] = lumen


def _ellipsoid(geo: Geometry, centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    d = sum(((c - v) / r) ** 2 for c, v, r in zip((geo.x, geo.y, geo.z), centre, radii))
    return np.broadcast_to(d <= 1, geo.shape)


def _to_index(geo: Geometry, world: np.ndarray) -> np.ndarray:
    origin = np.array([geo.x.flat[0], geo.y.flat[0], geo.z.flat[0]])
    return np.floor((world - origin) / np.array(geo.spacing)).astype(int)


def _smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, sigma_vox: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return field / max(float(field.std()), 1e-6)


def _acquire(hu: np.ndarray, geo: Geometry, rng: np.random.Generator) -> np.ndarray:
    """Partial-volume blur and correlated noise, as a reconstructed CT would show."""
    blurred = ndimage.gaussian_filter(hu, sigma=[0.9 / s for s in geo.spacing])
    noise = _smooth_noise(hu.shape, rng, sigma_vox=0.7) * rng.uniform(8, 16)
    return np.clip(np.rint(blurred + noise), -1024, 3071).astype(np.int16)


def reorient(image: np.ndarray, label: np.ndarray, affine: np.ndarray, axcodes: str):
    """Store the same scan in another voxel order; the world-space content is unchanged."""
    transform = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(tuple(axcodes))
    )
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, image.shape)
    return (
        nib.orientations.apply_orientation(image, transform),
        nib.orientations.apply_orientation(label, transform),
        new_affine,
    )


def _nifti(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.ascontiguousarray(array), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return img


LAYOUTS = ("msd", "nnunet", "nih")


def write_dataset(
    output_dir: str | Path, num_cases: int, seed: int = 0, lesions: bool = False, layout: str = "msd"
) -> Path:
    """Write the synthetic set under ``output_dir`` in a real dataset's layout.

    ``msd``: ``imagesTr/``, ``labelsTr/`` and ``dataset.json`` with a ``training`` list (as MSD
    Task07); ``nnunet``: nnU-Net v2 raw (``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``,
    ``dataset.json`` with label names to values); ``nih``: as TCIA ships NIH Pancreas-CT, a DICOM
    series per patient in ``Pancreas-CT/PANCREAS_NNNN/<study>/<series>/`` and canonical (RAS)
    NIfTI labels ``TCIA_pancreas_labels-02-05-2017/labelNNNN.nii.gz``.

    The dataset is built in a temporary sibling folder and renamed into place, so an interrupted
    run never leaves a half-written dataset. An existing non-empty ``output_dir`` is refused.
    Returns ``output_dir``'s ``dataset.json`` (msd, nnunet) or the folder itself (nih).
    """
    if num_cases < 1:
        raise ValueError(f"num_cases must be at least 1, got {num_cases}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    out = Path(output_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: output folder exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    labels = LABELS if lesions else {k: v for k, v in LABELS.items() if k != "2"}
    try:
        for i in range(num_cases):
            image, label, affine = make_case(seed, i, lesions)
            axcodes = ORIENTATIONS[int(np.random.default_rng([seed, i, 99]).integers(len(ORIENTATIONS)))]
            if layout == "nih":
                _write_nih_case(tmp, i + 1, _nifti(image, affine), _nifti(label, affine))
                continue
            image, label, affine = reorient(image, label, affine, axcodes)
            name, channel = f"synth_{i:03d}", "_0000" if layout == "nnunet" else ""
            for folder, array, file in (("imagesTr", image, name + channel), ("labelsTr", label, name)):
                (tmp / folder).mkdir(exist_ok=True)
                nib.save(_nifti(array, affine), tmp / folder / f"{file}.nii.gz")
        if layout == "msd":
            _write_msd_json(tmp / "dataset.json", labels, num_cases, seed)
        elif layout == "nnunet":
            meta = {
                "channel_names": {"0": "CT"},
                "labels": {name: int(value) for value, name in labels.items()},
                "numTraining": num_cases,
                "file_ending": ".nii.gz",
            }
            (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out if layout == "nih" else out / "dataset.json"


def _write_msd_json(path: Path, labels: dict[str, str], num_cases: int, seed: int) -> None:
    names = [f"synth_{i:03d}" for i in range(num_cases)]
    meta = {
        "name": "SyntheticPancreasCT",
        "description": f"attnunet synthetic pancreas-style CT, generator v{GENERATOR_VERSION}, seed {seed}",
        "reference": "generated by attnunet.data.synthetic",
        "licence": "CC0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": labels,
        "numTraining": num_cases,
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in names],
        "test": [],
    }
    path.write_text(json.dumps(meta, indent=2))


def _write_nih_case(root: Path, number: int, image: nib.Nifti1Image, label: nib.Nifti1Image) -> None:
    patient = f"PANCREAS_{number:04d}"
    series = root / "Pancreas-CT" / patient / f"11-24-2015-PANCREAS{number:04d}-Pancreas-1" / "Pancreas-1"
    write_series(image, series)
    labels = root / "TCIA_pancreas_labels-02-05-2017"
    labels.mkdir(parents=True, exist_ok=True)
    nib.save(nib.as_closest_canonical(label), labels / f"label{number:04d}.nii.gz")
