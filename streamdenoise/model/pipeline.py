"""One micrograph through the denoiser: bin, denoise, return. Pure: arrays in, arrays out.

Shared by `streamdenoise denoise`, the live daemon and the distributed runner, so all three
give the same output for the same model and settings.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from streamdenoise.engine.profiling import stage
from streamdenoise.model.inference import (
    NORM_SCALE,
    Denoised,
    live_denoise_many,
    normalize,
)
from streamdenoise.model.tiling import DEFAULT_MAX_TILE
from streamdenoise.physics.binning import bin_image
from streamdenoise.stats.filters import flatten_background
from streamdenoise.stats.noise import NoiseSpectrum, estimate_noise_spectrum

MIN_SIDE = 32
"""Smallest side (pixels, at the working pixel size) of a micrograph worth denoising."""
COUNTS_CONSISTENCY = (0.5, 2.0)
"""Poisson noise is trusted when the spectral estimate lies within this factor of it."""
NULL_TILES = 3
"""Tiles of noise per micrograph in `Denoised.null`. The null's sampling error falls as
1/√k: in the readiness benchmark a low-dose 6MSM field (94 particles at 22 e⁻/Å²) was
counted under a quarter of its particles in 2 of 3 draws with one tile, in 1 of 3 with two
and in none of 8 with three (at least 28; RESULTS.md, "Picking readiness"). Each costs one
more network tile per micrograph (a binned Falcon 4i micrograph is 9 tiles; "Daemon
profile")."""


def fit_tile(height: int, width: int, max_tile: int, overlap: int, multiple: int) -> int:
    """The smallest square tile (a multiple of `multiple`, ≤ `max_tile` unless the image
    needs more) that covers (height, width) with as few tiles as `max_tile` would.

    E.g. 1024² with max_tile 512 and overlap 32: 3×3 tiles of 364 px (1.2 Mpx computed)
    instead of 3×3 tiles of 512 px (2.4 Mpx).
    """
    side = max(height, width)
    if side <= max_tile:
        return -(-side // multiple) * multiple
    count = math.ceil((side - overlap) / (max_tile - overlap))
    needed = math.ceil((side + (count - 1) * overlap) / count)
    return -(-needed // multiple) * multiple


def noise_level(
    binned: np.ndarray, raw_mean: float, area_ratio: float
) -> tuple[float, NoiseSpectrum, float]:
    """Noise std σ̂ of `binned` (H, W) in normalised units, its fitted noise spectrum
    (which the do-no-harm guard and the picking statistics reuse) and the normalised unit
    in the image's units (NORM_SCALE × its std).

    For counting-detector data the values are electron counts and the shot noise is
    Poisson: variance = mean count per raw pixel × (binned pixels / raw pixels) after a
    mean-preserving Fourier crop. That is exact where it applies, so it is used when the
    spectral estimate (`estimate_noise_spectrum`, biased upward by signal near Nyquist) agrees
    with it to within a factor of two in variance; otherwise (scaled or non-count data)
    the spectral estimate is used.
    """
    normed, _, std = normalize(binned)
    spectrum = estimate_noise_spectrum(normed)
    spectral = spectrum.pixel_sigma
    unit = NORM_SCALE * std
    if raw_mean <= 0:
        return spectral, spectrum, unit
    poisson = math.sqrt(raw_mean * area_ratio) / unit
    low, high = COUNTS_CONSISTENCY
    return (poisson if low <= (spectral / poisson) ** 2 <= high else spectral), spectrum, unit


@dataclass(frozen=True)
class DenoiseSettings:
    """How to denoise (one Tweedie step over large blended tiles): binning (an integer or
    fractional factor, or a target pixel size in Å; neither: the model's training pixel
    size, never upsampling), tiling in pixels of the binned image, tiles per network call
    (None: the device's default, 1 on a CPU and 8 on a GPU), the network's autocast dtype
    (None: `streamdenoise.engine.batches.network_dtype`'s choice for the device),
    whether the do-no-harm guard may keep the input (`streamdenoise.stats.guard`), and an
    optional background scale in Å: subtract the output's plane and Gaussian low-pass of
    that σ (ice gradients, thickness), keeping its mean."""

    bin_factor: float | None = None
    target_pixel_size: float | None = None
    tile: int = DEFAULT_MAX_TILE
    overlap: int = 32
    batch_size: int | None = None
    dtype: torch.dtype | None = None
    guard: bool = True
    background_scale: float | None = None

    def __post_init__(self) -> None:
        if self.bin_factor is not None and self.target_pixel_size is not None:
            raise ValueError("give a binning factor or a target pixel size, not both")
        if self.bin_factor is not None and self.bin_factor < 1:
            raise ValueError(f"binning factor must be ≥ 1, got {self.bin_factor}")
        if self.tile < 1 or not 0 <= self.overlap < self.tile:
            raise ValueError(
                f"need tile ≥ 1 and 0 ≤ overlap < tile; got tile {self.tile}, "
                f"overlap {self.overlap}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch size must be ≥ 1, got {self.batch_size}")
        if self.target_pixel_size is not None and self.target_pixel_size <= 0:
            raise ValueError(f"target pixel size must be > 0, got {self.target_pixel_size}")
        if self.background_scale is not None and self.background_scale <= 0:
            raise ValueError(f"background scale must be > 0 Å, got {self.background_scale}")

    def binning_factor(self, pixel_size: float, model_pixel_size: float) -> float:
        """The factor (≥ 1) that takes `pixel_size` (Å/px) to the working pixel size."""
        if self.bin_factor is not None:
            return self.bin_factor
        target = self.target_pixel_size or model_pixel_size
        return max(1.0, target / pixel_size)


@dataclass(frozen=True)
class Prepared:
    """A micrograph binned to the working pixel size: image (h, w) float32, its pixel size
    in Å/px, its noise level σ̂ in normalised units, its fitted noise spectrum (normalised
    units), the shape (H, W) of the input micrograph it was binned from and the factor
    from normalised units to the image's (`normalize`'s NORM_SCALE × std)."""

    image: np.ndarray
    pixel_size: float
    sigma: float
    noise: NoiseSpectrum
    input_shape: tuple[int, int]
    normalised_unit: float

    @property
    def image_noise(self) -> NoiseSpectrum:
        """The fitted noise spectrum in the image's own units (counts for counting data)."""
        return self.noise.scaled(self.normalised_unit)

    @property
    def input_pixels(self) -> float:
        """Input pixels per working pixel (1 unbinned). The crop keeps the mean, so the
        image times this is the input's values summed over each working pixel: counts stay
        counts (their noise variance equal to their mean), which the picking statistics'
        flat-ice and ice-thickness measures need."""
        return self.input_shape[0] * self.input_shape[1] / self.image.size


def prepare(
    image: np.ndarray, pixel_size: float, model_pixel_size: float, settings: DenoiseSettings
) -> Prepared:
    """Bin `image` (H, W) at `pixel_size` Å/px to the working pixel size; estimate σ̂."""
    factor = settings.binning_factor(pixel_size, model_pixel_size)
    with stage("bin"):
        binned, working_pixel = (
            bin_image(image, pixel_size, factor) if factor > 1 else (image, pixel_size)
        )
        binned = np.asarray(binned, dtype=np.float32)
    if min(binned.shape) < MIN_SIDE:
        height, width = binned.shape
        raise ValueError(
            f"too small: {width}×{height} px at {working_pixel:.3g} Å/px (at least {MIN_SIDE} "
            "px a side)"
        )
    with stage("noise estimate"):
        sigma, spectrum, unit = noise_level(binned, float(np.mean(image)), binned.size / image.size)
    return Prepared(binned, working_pixel, sigma, spectrum, image.shape, unit)


def null_noise(prepared: Prepared, side: int, draw: int = 0) -> np.ndarray:
    """`NULL_TILES` tiles of noise (k, side, side) float32 of `prepared`'s fitted spectrum
    at its σ̂, in its normalised units (the input of `Denoised.null`). At σ̂, not at the
    spectrum's own level: σ̂ is the level the network is told, and for counting data it is
    the exact shot noise, where the spectral fit takes in the particles' power near Nyquist
    (in packed fields 30 % more σ: a null that noisy made the network invent blobs and cut
    their counts).

    Seeded by the micrograph's own pixels (and `draw`, for other draws of the same one):
    the same file gives the same null, so outputs are reproducible, and different
    micrographs get independent draws, so that a session's figures average the null's
    sampling error instead of sharing one draw's luck (one seed for all moved the real
    apoferritin count of a whole set between 0.47 and 1.00 median error)."""
    spectrum = prepared.noise.scaled(prepared.sigma / prepared.noise.pixel_sigma)
    seed = np.random.SeedSequence([zlib.crc32(np.ascontiguousarray(prepared.image)), draw])
    rng = np.random.default_rng(seed)
    noise = np.stack([spectrum.sample((side, side), rng) for _ in range(NULL_TILES)])
    return np.clip(noise, -1.0, 1.0).astype(np.float32)  # as `normalize` clips


def denoise_prepared(
    prepared: list[Prepared],
    model: nn.Module,
    settings: DenoiseSettings,
    device: torch.device | str | None = None,
    *,
    null: bool = True,
    null_draw: int = 0,
) -> list[Denoised]:
    """Denoise binned micrographs; in live mode their tiles share network batches.

    Returns the denoised float32 images at the working pixel size, in the inputs' scale,
    each with its guard report (live mode) and, with `null`, its `Denoised.null`:
    `NULL_TILES` extra network tiles per micrograph (the picking statistics' noise
    calibration), `null_draw` choosing which draw of its noise (`null_noise`).
    """
    height = max(p.image.shape[0] for p in prepared)
    width = max(p.image.shape[1] for p in prepared)
    multiple = getattr(model, "size_multiple", 1)
    tile = fit_tile(height, width, settings.tile, settings.overlap, multiple)
    results = live_denoise_many(
        [p.image for p in prepared],
        model,
        sigmas=[p.sigma for p in prepared],
        spectra=[p.noise for p in prepared],
        nulls=[null_noise(p, tile, null_draw) for p in prepared] if null else None,
        tile=tile,
        overlap=settings.overlap,
        batch_size=settings.batch_size,
        device=device,
        dtype=settings.dtype,
        guard=settings.guard,
    )
    if settings.background_scale is None:
        return results
    with stage("flatten background"):
        flattened = []
        for result, p in zip(results, prepared, strict=True):
            sigma = settings.background_scale / p.pixel_size
            null = None
            if result.null is not None:
                null = np.stack([flatten_background(tile, sigma) for tile in result.null])
            image = flatten_background(result.image, sigma)
            flattened.append(replace(result, image=image, null=null))
        return flattened


def denoise_image(
    image: np.ndarray,
    pixel_size: float,
    model: nn.Module,
    model_pixel_size: float,
    settings: DenoiseSettings,
    device: torch.device | str | None = None,
    null_draw: int = 0,
) -> tuple[Denoised, float]:
    """Bin `image` (H, W) at `pixel_size` Å/px and denoise it.

    Returns the denoised float32 image (h, w) at the working pixel size with its guard
    report and its null (draw `null_draw`, `null_noise`), and that pixel size in Å/px.
    """
    prepared = prepare(image, pixel_size, model_pixel_size, settings)
    denoised = denoise_prepared([prepared], model, settings, device, null_draw=null_draw)
    return denoised[0], prepared.pixel_size
