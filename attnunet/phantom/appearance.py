"""Appearance of the phantom: Hounsfield units per tissue, contrast phase, texture, and the scanner.

Domain randomisation in the manner of SynthSeg (Billot et al., 2023), but kept inside plausible CT:
every case draws a contrast phase (non-contrast, late arterial, portal venous) and, per tissue, a mean
HU from that phase's range and a texture strength; then the scanner: partial-volume rendering on a
finer grid averaged into thick slices, a point-spread blur, a smooth additive bias (beam hardening /
cupping) and correlated noise of random strength.

Calibration. Non-contrast ranges are centred on what the real CT kept for reference shows
(TotalSegmentator example, 3 mm; mean HU in its organ map: liver 45, spleen 33, kidneys 11-18,
aorta 42, IVC 39, portal/splenic vein 35, small bowel 16, duodenum median 10, psoas 44-48, fat -93,
pancreas -6 with a fatty, partial-volume-blurred gland whose eroded core is +3). Enhanced phases use
the usual clinical values (e.g. portal venous: liver 100-130, pancreas 80-120, portal vein 150-200;
late arterial: aorta 220-400, pancreas 95-140, spleen 90-150). The pancreas is then pulled
to within a few HU of one of its large neighbours (liver, spleen, bowel wall, muscle), so that its
intensities are never its own: they overlap bowel wall, vessels, liver and spleen as in real scans.

The ranges cover the older patients that real cohorts are made of: bone marrow down to fatty /
osteoporotic values (50 HU; the real CT's sacrum has a median of 74), kidneys in non-contrast scans
down to 10 HU, and in a fifth of the cases a steatotic liver (15-50 HU lower in every phase). Metal
implants (:mod:`.implants`) are rendered with the streaks a scanner makes of them (:func:`metal_streaks`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from attnunet.phantom.canvas import Tissue, among, smooth, upsample

T = Tissue
PHASES = ("non_contrast", "arterial", "portal_venous")
PHASE_PROBABILITIES = (0.3, 0.2, 0.5)

# Mean HU ranges (uniform) per phase; tissues missing from a phase use BASE.
BASE: dict[Tissue, tuple[float, float]] = {
    T.AIR: (-1010, -990),
    T.SUBCUTANEOUS_FAT: (-115, -85),
    T.VISCERAL_FAT: (-110, -80),
    T.MUSCLE: (40, 60),
    T.BONE_CORTEX: (500, 900),
    T.BONE_MARROW: (50, 260),
    T.CSF: (0, 20),
    T.BOWEL_FLUID: (-5, 25),
    T.GAS: (-1000, -850),
    T.STOOL: (-60, 30),
    T.BILE: (-5, 20),
    T.LUNG: (-880, -780),
    T.FOOD: (10, 70),
    T.METAL: (2500, 3071),
}
PHASE_HU: dict[str, dict[Tissue, tuple[float, float]]] = {
    "non_contrast": {
        T.LIVER: (40, 65),
        T.SPLEEN: (35, 52),
        T.KIDNEY_CORTEX: (10, 40),
        T.KIDNEY_MEDULLA: (8, 36),
        T.ARTERY: (35, 50),
        T.SYSTEMIC_VEIN: (35, 50),
        T.PORTAL_VEIN: (33, 48),
        T.BOWEL_WALL: (15, 45),
        T.PANCREAS: (25, 50),
    },
    "arterial": {
        T.LIVER: (60, 90),
        T.SPLEEN: (90, 150),
        T.KIDNEY_CORTEX: (160, 260),
        T.KIDNEY_MEDULLA: (60, 110),
        T.ARTERY: (220, 400),
        T.SYSTEMIC_VEIN: (60, 130),
        T.PORTAL_VEIN: (100, 180),
        T.BOWEL_WALL: (70, 120),
        T.PANCREAS: (95, 140),
        T.MUSCLE: (50, 65),
    },
    "portal_venous": {
        T.LIVER: (95, 130),
        T.SPLEEN: (100, 135),
        T.KIDNEY_CORTEX: (150, 210),
        T.KIDNEY_MEDULLA: (120, 190),
        T.ARTERY: (130, 200),
        T.SYSTEMIC_VEIN: (110, 170),
        T.PORTAL_VEIN: (140, 210),
        T.BOWEL_WALL: (75, 115),
        T.PANCREAS: (80, 120),
        T.MUSCLE: (50, 65),
    },
}
# Texture: standard deviation (HU) of a smooth per-tissue pattern, range per case.
TEXTURE: dict[Tissue, tuple[float, float]] = {
    T.SUBCUTANEOUS_FAT: (5, 15),
    T.VISCERAL_FAT: (12, 28),
    T.MUSCLE: (5, 12),
    T.BONE_CORTEX: (60, 150),
    T.BONE_MARROW: (30, 70),
    T.LIVER: (3, 8),
    T.SPLEEN: (3, 10),
    T.KIDNEY_CORTEX: (5, 15),
    T.KIDNEY_MEDULLA: (5, 15),
    T.BOWEL_WALL: (6, 15),
    T.BOWEL_FLUID: (3, 8),
    T.STOOL: (30, 80),
    T.PANCREAS: (6, 16),
    T.PANCREAS_FAT: (10, 25),
    T.LESION: (4, 10),
    T.LUNG: (30, 70),
    T.FOOD: (10, 30),
}
# The pancreas shares its HU with one of these (real CT: no intensity of its own).
CONFOUNDERS = (T.LIVER, T.SPLEEN, T.BOWEL_WALL, T.MUSCLE)
STEATOSIS_PROBABILITY = 0.2
METAL_HU = 2000  # rendered HU above this are metal (bone cortex stays below it)


def sample_appearance(
    rng: np.random.Generator, phase: str | None = None, findings: np.random.Generator | None = None
) -> dict:
    """Draw one case's phase, mean HU and texture strength per tissue, and scanner settings.

    Args:
        rng: the case's core stream (phase, HU, texture and scanner, in a fixed order of draws).
        findings: the case's findings stream (steatosis, metal streak strength); None: no steatosis
            and medium streaks.
    """
    if phase is None:
        phase = PHASES[int(rng.choice(len(PHASES), p=PHASE_PROBABILITIES))]
    ranges = {**BASE, **PHASE_HU[phase]}
    mean = np.zeros(len(Tissue), dtype=np.float32)
    for t in Tissue:
        if t in ranges:
            mean[t] = rng.uniform(*ranges[t])
    # Pancreas: pulled towards a confounder, so no interval isolates it.
    anchor = CONFOUNDERS[int(rng.integers(len(CONFOUNDERS)))]
    mean[T.PANCREAS] = mean[anchor] + rng.uniform(-8, 8) if rng.random() < 0.7 else mean[T.PANCREAS]
    mean[T.PANCREAS_FAT] = rng.uniform(-100, -40)  # fat, but partial volumes with the lobules around it
    mean[T.LESION] = mean[T.PANCREAS] - rng.uniform(25, 60)
    # Fatty liver, applied after the pancreas took its anchor (a pancreas anchored to the liver does not follow it).
    if findings is not None and findings.random() < STEATOSIS_PROBABILITY:
        mean[T.LIVER] -= findings.uniform(15, 50)
    texture = np.zeros(len(Tissue), dtype=np.float32)
    for t, (lo, hi) in TEXTURE.items():
        texture[t] = rng.uniform(lo, hi)
    return {
        "phase": phase,
        "mean": mean,
        "texture": texture,
        "psf_mm": rng.uniform(0.6, 1.3),  # in-plane point-spread sigma
        "noise_hu": rng.uniform(6, 24),
        "noise_grain_vox": rng.uniform(0.5, 1.0),
        "bias_hu": rng.uniform(0, 25),
        "streak_hu": 250.0 if findings is None else findings.uniform(100, 400),  # strongest metal streaks
    }


def _smooth(shape: tuple[int, ...], rng: np.random.Generator, sigma_vox, scale: float = 1.0) -> np.ndarray:
    """:func:`~.canvas.smooth` as appearance draws it: float32 draws, a 3-sigma filter."""
    return smooth(shape, rng, sigma_vox, scale, draw_dtype=np.float32, truncate=3.0, estimate_above=1e6)


def render(tissue: np.ndarray, spacing, rng: np.random.Generator, look: dict) -> np.ndarray:
    """Noise-free HU on the rendering grid: per-tissue mean plus per-tissue smooth texture."""
    hu = look["mean"][tissue]
    half = tuple((n + 1) // 2 for n in tissue.shape)  # the coarse pattern is drawn at half resolution
    pattern = upsample(_smooth(half, rng, 1.0 / np.asarray(spacing), 0.6), tissue.shape)
    fine = _smooth(tissue.shape, rng, 0.8 / np.asarray(spacing))
    # Stool and food are mottled with gas bubbles.
    mottled = among(tissue, (T.STOOL, T.FOOD)) & (fine > 1.3)
    pattern += np.multiply(fine, 0.8, out=fine)
    pattern *= look["texture"][tissue]
    hu += pattern
    hu[mottled] = rng.uniform(-900, -500)
    return hu


def acquire(hu: np.ndarray, spacing, slab: int, rng: np.random.Generator, look: dict) -> np.ndarray:
    """Scanner: in-plane point spread, ``slab`` fine slices averaged into one, bias, noise -> int16 HU."""
    spacing = np.asarray(spacing, float)
    is_metal = hu > METAL_HU
    sigma = [look["psf_mm"] / spacing[0], look["psf_mm"] / spacing[1], 0.35]
    hu = ndimage.gaussian_filter(hu, sigma, truncate=3.0)
    hu = _slab(hu, slab)
    if is_metal.any():  # most cases hold none: only then the share of metal per acquired voxel
        hu += metal_streaks(_slab(is_metal, slab), spacing[:2], rng, look["streak_hu"])
    shape = hu.shape
    # Smooth additive bias: a tilted, bowl-shaped field (cupping) plus a very smooth random part.
    gx, gy = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    bowl = -(1 - gx**2 - gy**2)[..., None] * rng.uniform(-1, 1)
    slow = _smooth(tuple(max(2, s // 8) for s in shape), rng, 1.0)
    slow = upsample(slow, shape)
    body = hu > -500
    hu += body * look["bias_hu"] * (0.5 * bowl + 0.5 * slow)
    noise = _smooth(shape, rng, [look["noise_grain_vox"], look["noise_grain_vox"], 0.3])
    hu += np.multiply(noise, look["noise_hu"], out=noise)
    return np.clip(np.rint(hu, out=hu), -1024, 3071, out=hu).astype(np.int16)


def _slab(volume: np.ndarray, k: int) -> np.ndarray:
    """Average every ``k`` consecutive slices (last axis): thick slices from a fine rendering."""
    if k <= 1:
        return volume.astype(np.float32)
    n = volume.shape[2] // k
    return volume[..., : n * k].reshape(*volume.shape[:2], n, k).mean(-1, dtype=np.float32)


def metal_streaks(
    metal: np.ndarray, pixel_mm, rng: np.random.Generator, strength_hu: float, n_angles: int = 180
) -> np.ndarray:
    """Streak artifacts of metal, slice by slice: the error a filtered back-projection makes of it.

    Written by hand (MONAI and scipy have no CT artifact model). Each axial slice is projected at
    ``n_angles`` angles; along every ray the metal path length ``p`` (mm) gives a projection error of
    beam hardening (``-p**2``) plus photon starvation noise (``p`` times a random normal); the errors
    are ramp-filtered and back-projected. That yields what a real scan shows: dark bands along the
    rays that cross two metal objects, bright and dark streaks radiating from them. The streaks fade
    with the distance from the metal (a random 30-80 mm scale; a real scan's are also strongest near
    it, where all the views' errors meet), and the volume is scaled so that its strongest streaks
    (99.9th percentile) reach ``strength_hu``: slices with little metal get weak streaks.

    Args:
        metal: ``(X, Y, Z)`` share of metal per voxel (0..1).
        pixel_mm: in-plane voxel size (x, y).

    Returns:
        ``(X, Y, Z)`` float32 HU to add (zero in slices without metal).
    """
    out = np.zeros(metal.shape, np.float32)
    slices = np.flatnonzero(metal.any(axis=(0, 1)))
    nx, ny = metal.shape[:2]
    x = ((np.arange(nx) - nx / 2) * float(pixel_mm[0])).astype(np.float32)
    y = ((np.arange(ny) - ny / 2) * float(pixel_mm[1])).astype(np.float32)
    step = float(min(pixel_mm))
    n_bins = int(np.ceil(np.hypot(x[-1] - x[0], y[-1] - y[0]) / step)) + 2
    angles = np.linspace(0, np.pi, n_angles, endpoint=False, dtype=np.float32)
    # Bin of every pixel on every projection: (angles, X * Y).
    offset = np.cos(angles)[:, None, None] * x[:, None] + np.sin(angles)[:, None, None] * y[None, :]
    bins = np.clip(np.rint(offset / step + n_bins / 2), 0, n_bins - 1).astype(np.int32).reshape(n_angles, -1)
    ramp = np.abs(np.fft.rfftfreq(2 * n_bins))
    fade_mm = rng.uniform(30, 80)
    for k in slices:
        share = metal[..., k]
        where = np.flatnonzero(share)
        weights = share.ravel()[where] * step
        path = np.stack([np.bincount(bins[a][where], weights=weights, minlength=n_bins) for a in range(n_angles)])
        error = -(path**2) + 2.0 * path * rng.standard_normal(path.shape)
        filtered = np.fft.irfft(np.fft.rfft(error, 2 * n_bins, axis=1) * ramp, axis=1)[:, :n_bins].astype(np.float32)
        image = np.take_along_axis(filtered, bins, axis=1).sum(0).reshape(nx, ny)
        solid = share > 0.5
        image *= np.exp(-ndimage.distance_transform_edt(~solid, sampling=pixel_mm) / fade_mm).astype(np.float32)
        image[solid] = 0  # the metal itself keeps its rendered value
        out[..., k] = image
    peak = float(np.percentile(np.abs(out[..., slices]), 99.9))
    return out * np.float32(strength_hu / peak) if peak > 0 else out
