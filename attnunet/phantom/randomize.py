"""Appearance drawn anew for every training patch from a phantom's tissue map (sim-to-real).

The phantoms' images render one appearance per case, calibrated on real CT: a model trained on
them learns that appearance and little else (see docs/results.md, sim-to-real). Here every
training patch is rendered again from its tissue map, as SynthSeg (Billot et al., MedIA 2023) does
for brain MRI: in a share of the draws from the calibrated per-phase priors of
:mod:`.appearance` with a wider spread, in the rest with a random mean HU per tissue class over a
range (soft tissues only: fat, bone, air and lung keep their physical ranges), so that no intensity
identifies the pancreas; some of its neighbours (bowel, vessels,
liver, spleen, muscle) are then given the pancreas' own HU. Then the scanner, all at random: a
smooth texture per tissue, partial volume and slice thickness (a Gaussian point spread, wide along
one axis), a smooth additive bias, noise of random grain, and a gamma on the windowed intensities.
Geometry is randomised too: a smooth random deformation of label and tissue map per patch, so that
32 phantoms are not learnt by heart.

MONAI has the scanner parts as separate intensity transforms, but none renders from a class map;
one transform here draws every part from one random state and works on the HU scale the
calibration is written in, before the window.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from monai import transforms as mt
from scipy import ndimage

from attnunet.phantom.appearance import sample_appearance
from attnunet.phantom.canvas import Tissue, upsample
from attnunet.phantom.writer import TISSUE_DIR

TISSUE = "tissue"  # key of the tissue map in a training item
# Neighbours of the pancreas that may take its HU (real CT: no intensity isolates the gland).
NEIGHBOURS = (
    Tissue.BOWEL_WALL,
    Tissue.BOWEL_FLUID,
    Tissue.PORTAL_VEIN,
    Tissue.SYSTEMIC_VEIN,
    Tissue.ARTERY,
    Tissue.LIVER,
    Tissue.SPLEEN,
    Tissue.MUSCLE,
    Tissue.KIDNEY_CORTEX,
    Tissue.LESION,
)
FWHM_PER_SIGMA = 2.355
# Random draws keep what CT's calibration makes physical everywhere: fat below water, bone above soft
# tissue, air, gas and lung dark, metal brightest. Only the soft tissues, whose HU depend on contrast
# phase, scanner and patient, are drawn over ``random_hu``. Fully random classes (bone included, as
# SynthSeg does for MRI) let a phantom-trained model call the sacrum pancreas on real CT
# (docs/results.md, sim-to-real).
PHYSICAL_HU: dict[Tissue, tuple[float, float]] = {
    Tissue.AIR: (-1000.0, -1000.0),
    Tissue.GAS: (-1000.0, -700.0),
    Tissue.LUNG: (-950.0, -700.0),
    Tissue.SUBCUTANEOUS_FAT: (-150.0, -40.0),
    Tissue.VISCERAL_FAT: (-150.0, -40.0),
    Tissue.PANCREAS_FAT: (-150.0, -20.0),
    Tissue.BONE_CORTEX: (300.0, 1500.0),
    Tissue.BONE_MARROW: (50.0, 400.0),
    Tissue.METAL: (2000.0, 3071.0),
}


@dataclass(frozen=True)
class AppearanceSpec:
    """How training patches are rendered from tissue maps (``data.appearance``).

    Attributes:
        tissue_dir: folder of the tissue maps, relative to the dataset root; a case's map has its
            label's file name.
        prior_fraction: share of patches drawn from the calibrated priors; the rest draw a mean HU
            per soft-tissue class uniformly from ``random_hu`` (fat, bone, air, gas, lung and metal
            uniformly from their physical ranges, :data:`PHYSICAL_HU`).
        prior_jitter_hu: standard deviation of a per-tissue shift added to the prior draws.
        random_hu: HU range of the random soft-tissue draws.
        random_texture_hu: range of the per-tissue texture strength (standard deviation) of random draws.
        neighbour_same_prob: probability, per neighbour of the pancreas, that it takes the pancreas' HU.
        in_plane_psf_mm: range of the point-spread sigma (mm) on every axis.
        thickness_mm: range of the slice thickness (mm, FWHM) along one axis (the S-I axis in
            70% of the draws, another one otherwise).
        bias_hu: largest amplitude of the smooth additive bias.
        noise_hu: range of the noise standard deviation.
        gamma_std: standard deviation of ``log(gamma)`` on the windowed [0, 1] intensities.
        deform_prob: probability of a smooth random deformation of label and tissue map.
        deform_mm: range of the deformation's typical displacement (mm).
    """

    tissue_dir: str = TISSUE_DIR
    prior_fraction: float = 0.5
    prior_jitter_hu: float = 20.0
    random_hu: tuple[float, float] = (-30.0, 300.0)
    random_texture_hu: tuple[float, float] = (0.0, 30.0)
    neighbour_same_prob: float = 0.15
    in_plane_psf_mm: tuple[float, float] = (0.3, 2.0)
    thickness_mm: tuple[float, float] = (0.0, 8.0)
    bias_hu: float = 40.0
    noise_hu: tuple[float, float] = (0.0, 30.0)
    gamma_std: float = 0.25
    deform_prob: float = 0.5
    deform_mm: tuple[float, float] = (2.0, 8.0)

    def __post_init__(self) -> None:
        for name in ("prior_fraction", "neighbour_same_prob", "deform_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"appearance.{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("random_hu", "random_texture_hu", "in_plane_psf_mm", "thickness_mm", "noise_hu", "deform_mm"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"appearance.{name} must be (low, high) with low <= high, got {[lo, hi]}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AppearanceSpec:
        """From a config node; unknown keys are refused (a misspelt setting must not be ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown data.appearance settings {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(float(x) for x in v) if isinstance(v, list | tuple) else v for k, v in d.items()})


class RandRenderTissued(mt.RandomizableTransform, mt.MapTransform):
    """Replace ``image`` by a new rendering of ``tissue`` (a training patch).

    Input: ``tissue`` ``(1, *spatial)`` integer :class:`~attnunet.phantom.canvas.Tissue` classes on
    the preprocessed grid of ``spacing`` mm (2D or 3D). Output: ``image`` ``(1, *spatial)`` float32
    in [0, 1], windowed as the preprocessing windows real CT; the tissue map is left in place.
    """

    def __init__(self, spec: AppearanceSpec, spacing: tuple[float, ...], window: tuple[float, float]) -> None:
        mt.RandomizableTransform.__init__(self, prob=1.0)
        mt.MapTransform.__init__(self, [TISSUE])
        self.spec, self.spacing, self.window = spec, np.asarray(spacing, float), window

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        tissue = np.asarray(d[TISSUE])[0].astype(np.intp)
        rng = np.random.default_rng(self.R.randint(2**31))
        hu = self.render_hu(tissue, rng)
        lo, hi = self.window
        image = np.clip((hu - lo) / (hi - lo), 0.0, 1.0)
        image **= np.float32(np.exp(rng.normal(0.0, self.spec.gamma_std)))
        d["image"] = torch.from_numpy(image.astype(np.float32, copy=False))[None]
        return d

    def render_hu(self, tissue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``tissue`` ``(*spatial)`` class indices -> float32 HU of the same shape."""
        mean, texture = self.draw_tissue_hu(rng)
        field = _unit_noise(tissue.shape, rng, rng.uniform(0.5, 1.5))
        hu = mean[tissue] + field * texture[tissue]
        hu = ndimage.gaussian_filter(hu, self._psf_sigma(rng, tissue.ndim), truncate=3.0)
        hu += _smooth_bias(tissue.shape, rng) * rng.uniform(0.0, self.spec.bias_hu) * (tissue != Tissue.AIR)
        hu += _unit_noise(tissue.shape, rng, rng.uniform(0.0, 1.0)) * rng.uniform(*self.spec.noise_hu)
        return hu

    def draw_tissue_hu(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Mean HU and texture strength per tissue class, ``(len(Tissue),)`` float32 each."""
        s = self.spec
        if rng.random() < s.prior_fraction:
            look = sample_appearance(rng, None, rng)
            mean = look["mean"] + rng.normal(0.0, s.prior_jitter_hu, len(Tissue)).astype(np.float32)
            texture = look["texture"]
        else:
            mean = rng.uniform(*s.random_hu, len(Tissue)).astype(np.float32)
            for tissue, (lo, hi) in PHYSICAL_HU.items():
                mean[tissue] = rng.uniform(lo, hi)
            texture = rng.uniform(*s.random_texture_hu, len(Tissue)).astype(np.float32)
        mean[Tissue.AIR] = -1000.0  # the body crop is defined on air
        same = np.asarray(NEIGHBOURS)[rng.random(len(NEIGHBOURS)) < s.neighbour_same_prob]
        mean[same] = mean[Tissue.PANCREAS] + rng.normal(0.0, 5.0, len(same))
        return mean, texture

    def _psf_sigma(self, rng: np.random.Generator, ndim: int) -> np.ndarray:
        """Point-spread sigma per axis (voxels): isotropic in-plane blur, slice thickness along one axis."""
        spacing = self.spacing[:ndim]
        sigma_mm = np.full(ndim, rng.uniform(*self.spec.in_plane_psf_mm))
        thick_axis = ndim - 1 if rng.random() < 0.7 else int(rng.integers(ndim))
        thickness_sigma = rng.uniform(*self.spec.thickness_mm) / FWHM_PER_SIGMA
        sigma_mm[thick_axis] = max(sigma_mm[thick_axis], thickness_sigma)
        return sigma_mm / spacing


def _unit_noise(shape: tuple[int, ...], rng: np.random.Generator, sigma_vox: float) -> np.ndarray:
    """Gaussian noise smoothed by ``sigma_vox`` voxels, rescaled to unit standard deviation (float32)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if sigma_vox > 0.05:
        noise = ndimage.gaussian_filter(noise, sigma_vox, truncate=3.0)
        noise /= max(float(noise.std()), 1e-6)
    return noise


def _smooth_bias(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A very smooth field in about [-1, 1]: random values on a 4-point grid per axis, interpolated."""
    return upsample(rng.uniform(-1.0, 1.0, (4,) * len(shape)), shape)


class RandSmoothDeformd(mt.RandomizableTransform, mt.MapTransform):
    """Bend label maps by one smooth random displacement field (nearest-neighbour resampling).

    Written by hand because MONAI's ``Rand3DElasticd`` smooths a full-resolution random field
    (several times this cost on a 64^3 patch) and ``RandGridDistortiond`` bends each axis on its
    own: here random displacements on a ``control_points``-per-axis lattice are interpolated to the
    patch and applied with ``grid_sample``.

    Args:
        keys: ``(1, *spatial)`` integer maps sharing one grid (2D or 3D), moved together.
        displacement_vox: range of the standard deviation of the displacement (voxels, per axis).
    """

    def __init__(
        self, keys: list[str], prob: float, displacement_vox: tuple[float, float], control_points: int = 5
    ) -> None:
        mt.RandomizableTransform.__init__(self, prob=prob)
        mt.MapTransform.__init__(self, keys)
        self.displacement_vox, self.control_points = displacement_vox, control_points

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        maps = [torch.as_tensor(d[k]) for k in self.keys]
        spatial = tuple(maps[0].shape[1:])
        rng = np.random.default_rng(self.R.randint(2**31))
        grid = smooth_sampling_grid(spatial, rng.uniform(*self.displacement_vox), self.control_points, rng)
        stacked = torch.cat([m.as_tensor() if hasattr(m, "as_tensor") else m for m in maps]).float()[None]
        moved = torch.nn.functional.grid_sample(stacked, grid, mode="nearest", padding_mode="zeros", align_corners=True)
        for i, (k, m) in enumerate(zip(self.keys, maps, strict=True)):
            out = moved[0, i : i + 1].to(m.dtype)
            d[k] = m.clone().copy_(out) if hasattr(m, "meta") else out
        return d


def smooth_sampling_grid(
    spatial: tuple[int, ...], std_vox: float, control_points: int, rng: np.random.Generator
) -> torch.Tensor:
    """``grid_sample`` grid ``(1, *spatial, ndim)`` of the identity plus a smooth random displacement
    (standard deviation ``std_vox`` voxels per axis at the lattice points)."""
    ndim = len(spatial)
    coarse = rng.normal(0.0, std_vox, (ndim,) + (control_points,) * ndim)
    shift = torch.from_numpy(upsample(coarse, (ndim, *spatial)))  # the first axis, one per component, kept
    axes = [torch.linspace(-1.0, 1.0, n) for n in spatial]
    identity = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in spatial]).view(ndim, *([1] * ndim))
    grid = identity + shift * scale  # (ndim, *spatial), first axis first
    return grid.flip(0).movedim(0, -1)[None]  # grid_sample wants the last spatial axis first


def patch_randomization(
    spec: AppearanceSpec, spacing: tuple[float, ...], window: tuple[float, float], label_key: str, ndim: int
) -> list[mt.MapTransform]:
    """The per-patch steps: a smooth random deformation of label and tissue map, then the rendering.

    ``spacing``: the preprocessed grid (mm per axis); ``ndim``: 2 for axial-slice patches, else 3.
    """
    voxel = float(np.mean(spacing[:ndim]))
    displacement = (spec.deform_mm[0] / voxel, spec.deform_mm[1] / voxel)
    return [
        RandSmoothDeformd([label_key, TISSUE], spec.deform_prob, displacement),
        RandRenderTissued(spec, spacing, window),
    ]
