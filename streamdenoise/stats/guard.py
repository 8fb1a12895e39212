"""Do-no-harm guard: is what the denoiser removed noise? Pure numpy, arrays in, numbers out.

A denoiser's output is x̂ = y − r, r the removed part (the residual). For the posterior mean
x̂ = E[x | y] of y = x + n, with noise n independent of the signal x, r = E[n | y], and in
every band of spatial frequencies, in expectation:

    ‖r‖²  ≤  ‖n‖²        the residual holds no more power than the noise (Jensen);
    ‖r‖²  ≤  r · y       since r · x̂ = r · y − ‖r‖² ≥ 0: the residual is positively
                         correlated with the output's structure, a shrinkage of the input.

Both fail for a network asked to denoise beyond what it learned. The shipped simulator-
trained model on real apoferritin micrographs left a residual of 1.1–1.5× the noise power
per band and, at the particle scale, anticorrelated with its own output (the apoferritin
rings wiped, dark specks added): ‖r‖² > r · y. On held-out simulated micrographs the same
model stays at 0.4–1.0× the noise power in the judged bands, with ‖r‖² / r · y of 0.5–1.0.

`check_residual` measures, per radial band (Hann-windowed spectra), the residual power
‖r‖² / ‖n‖² and the invented power max(‖r‖² − r · y, 0) / ‖n‖² (the part of the output
anticorrelated with what was removed, in units of the noise power: negligible for a tiny
residual, however it is oriented). A micrograph fails when the residual power of any
judged band exceeds 1 + tolerance or its invented power exceeds the tolerance, the
tolerance widened by three standard errors of the band's power estimate. The lowest band
(below 1/16 cycles/px) is reported but not judged: it holds ice-thickness gradients and
carbon edges, background that a denoiser may legitimately remove (METHOD §1), and
signal-dependent shot noise makes its noise power least certain there. Where the guard
fails, the caller keeps the conservative output: the binned input, unchanged.

The noise power per band is σ̂² per pixel (white noise, `estimate_noise_sigma`), times a
relative `noise_shape` per band where the caller knows the noise to be coloured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamdenoise.stats.filters import particle_scale
from streamdenoise.stats.noise import radial_band_index

GUARD_TOLERANCE = 0.05
"""Slack (in units of the noise power) on both ratios before the band's sampling error."""
GUARD_BANDS = 8
"""Radial frequency bands between the lowest frequency and Nyquist."""
UNJUDGED_BANDS = 1
"""The lowest bands (background scale) are reported, not judged."""


@dataclass(frozen=True)
class GuardReport:
    """The guard's verdict on one micrograph.

    Attributes:
        passed: whether the denoised output was kept (else the binned input was).
        residual_power: the largest ‖r‖² / ‖n‖² of the judged bands (≤ 1 for a sound
            denoiser).
        invented_power: the largest max(‖r‖² − r·y, 0) / ‖n‖² of the judged bands (0 for
            a sound denoiser): output structure anticorrelated with what was removed.
        band: index of the band that failed most (0 = lowest frequencies), −1 if passed.
    """

    passed: bool
    residual_power: float
    invented_power: float
    band: int = -1

    def summary(self) -> str:
        """One line for the sidecar, the dashboard and the log."""
        if self.passed:
            return "guard passed"
        return (
            f"guard fallback (input kept): residual {self.residual_power:.2f}× the noise "
            f"power, invented {self.invented_power:.2f}× (band {self.band})"
        )

    def to_dict(self) -> dict[str, float | int | bool | str]:
        """JSON-able fields (all finite)."""
        return {
            "passed": self.passed,
            "residual_power": round(self.residual_power, 4),
            "invented_power": round(self.invented_power, 4),
            "band": self.band,
            "summary": self.summary(),
        }


@dataclass(frozen=True)
class BandRatios:
    """Per radial band (bands,): ‖r‖² / ‖n‖², max(‖r‖² − r·y, 0) / ‖n‖², and the number of
    Fourier coefficients."""

    residual_power: np.ndarray
    invented_power: np.ndarray
    coefficients: np.ndarray


def band_ratios(
    noisy: np.ndarray,
    denoised: np.ndarray,
    sigma: float,
    *,
    bands: int = GUARD_BANDS,
    noise_shape: np.ndarray | None = None,
) -> BandRatios:
    """The guard's two ratios per band for input y and output x̂ (r = y − x̂).

    Args:
        noisy: y, (H, W), normalised micrograph (or any units, the same as σ).
        denoised: x̂, (H, W), same units.
        sigma: σ̂, the noise std of y per pixel, > 0.
        bands: number of radial bands up to Nyquist.
        noise_shape: (bands,) relative noise power per band (1 = white), or None.
    """
    y = np.asarray(noisy, dtype=np.float64)
    r = y - np.asarray(denoised, dtype=np.float64)
    if y.shape != r.shape or y.ndim != 2:
        raise ValueError(f"noisy and denoised must be the same 2-D shape, got {y.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    window = np.outer(np.hanning(y.shape[0]), np.hanning(y.shape[1]))
    spectrum_y = np.fft.rfft2((y - y.mean()) * window)
    spectrum_r = np.fft.rfft2((r - r.mean()) * window)
    index = radial_band_index(y.shape, bands)
    # Interior rfft columns stand for two coefficients (their conjugate twins).
    weight = np.full(index.shape, 2.0)
    weight[:, 0] = 1.0
    if y.shape[1] % 2 == 0:
        weight[:, -1] = 1.0
    valid = index >= 0

    def per_band(values: np.ndarray) -> np.ndarray:
        return np.bincount(index[valid], (weight * values)[valid], minlength=bands)

    cross = per_band(np.real(np.conj(spectrum_y) * spectrum_r))
    power = per_band(np.abs(spectrum_r) ** 2)
    count = np.bincount(index[valid], weight[valid], minlength=bands)
    shape = np.ones(bands) if noise_shape is None else np.asarray(noise_shape, dtype=np.float64)
    # White noise of variance σ² puts σ²·Σ window² into every coefficient.
    noise = sigma**2 * float(np.sum(window**2)) * count * shape
    with np.errstate(divide="ignore", invalid="ignore"):
        residual_power = np.where(noise > 0, power / noise, 0.0)
        invented_power = np.where(noise > 0, np.maximum(power - cross, 0.0) / noise, 0.0)
    return BandRatios(residual_power, invented_power, count)


def check_residual(
    noisy: np.ndarray,
    denoised: np.ndarray,
    sigma: float,
    *,
    tolerance: float = GUARD_TOLERANCE,
    noise_shape: np.ndarray | None = None,
) -> GuardReport:
    """Does the residual y − x̂ look like (part of) the noise? See the module docstring.

    Args:
        noisy, denoised: y and x̂, (H, W), the same units (normalised micrographs).
        sigma: σ̂ per pixel in those units, > 0.
        tolerance: slack on both ratios; each band adds 3/√(coefficients).
        noise_shape: relative noise power per band (see `band_ratios`).
    """
    ratios = band_ratios(noisy, denoised, sigma, noise_shape=noise_shape)
    slack = tolerance + 3.0 / np.sqrt(np.maximum(ratios.coefficients, 1.0))
    excess = np.maximum(ratios.residual_power - (1.0 + slack), ratios.invented_power - slack)
    excess[:UNJUDGED_BANDS] = -np.inf
    worst = int(np.argmax(excess))
    passed = bool(excess[worst] <= 0.0)
    return GuardReport(
        passed=passed,
        residual_power=float(np.max(ratios.residual_power[UNJUDGED_BANDS:])),
        invented_power=float(np.max(ratios.invented_power[UNJUDGED_BANDS:])),
        band=-1 if passed else worst,
    )


def residual_structure_correlation(raw: np.ndarray, denoised: np.ndarray, diameter: float):
    """Correlation of the residual (raw − denoised) with the output's structure, both
    high-passed by removing a Gaussian low-pass of σ = D/2 (`diameter` D in pixels):
    removes signal when well above a plain low-pass filter's value. (H, W) arrays → float."""
    out = np.asarray(denoised, dtype=np.float64)
    a = particle_scale(np.asarray(raw, dtype=np.float64) - out, diameter)
    b = particle_scale(out, diameter)
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b) / norm) if norm > 0 else 0.0
