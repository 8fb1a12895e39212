"""A truth-free measure of how well a denoiser serves the picker (pure numpy).

For a linear detector P (the reference picker's difference of Gaussians at the particle
diameter), the quantity a picker cares about is how closely the response on the denoised
image, P f(y), follows the response on the clean image, P x. Neither x nor the noise
n = y − x is known, but for Gaussian noise of known covariance C Stein's lemma gives

    E⟨P f(y), P n⟩ = E tr(C Jᵀ),   J = ∂(PᵀP f)/∂y,

estimated with noise samples u ~ N(0, C) and a finite difference:
uᵀ PᵀP (f(y + εu) − f(y)) / ε. With ‖P x‖² = ‖P y‖² − E‖P n‖², the correlation

    ρ = (⟨P f(y), P y⟩ − E⟨P f(y), P n⟩) / (‖P f(y)‖ · ‖P x‖)

needs only y, the fitted noise spectrum and two extra denoiser calls per sample. For the
identity ρ = ‖P x‖ / ‖P y‖; a denoiser that removes noise in the particle band raises it; one
that removes particles or invents blobs lowers it. Measured on 19 real apoferritin
micrographs it ranks the harmful models far below the input, but it does not order
methods within a few hundredths of picking AP (benchmarks/RESULTS.md, "Real data").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from streamdenoise.stats.filters import difference_of_gaussians
from streamdenoise.stats.noise import NoiseSpectrum

Denoiser = Callable[[np.ndarray], np.ndarray]


def _detector(image: np.ndarray, diameter: float) -> np.ndarray:
    """The reference picker's linear response (no normalisation), (H, W) float64."""
    sigma = diameter / (2 * math.sqrt(2))
    return difference_of_gaussians(np.asarray(image, dtype=np.float64), sigma, 1.6 * sigma)


def response_correlation(
    denoise: Denoiser,
    image: np.ndarray,
    spectrum: NoiseSpectrum,
    diameter: float,
    *,
    samples: int = 2,
    step: float = 0.05,
    seed: int = 0,
) -> float:
    """Estimated correlation between the picker's response on `denoise(image)` and on the
    clean image (see the module docstring).

    Args:
        denoise: (H, W) → (H, W) in the same units as `image`.
        image: noisy micrograph (H, W) whose noise follows `spectrum` (same units).
        diameter: particle diameter, pixels.
        samples: noise samples for the Stein term; step: finite-difference step as a
            fraction of the noise.

    Returns:
        ρ in [−1, 1] (clipped); nan when the image's response holds no more power than
        its noise does (nothing to detect).
    """
    y = np.asarray(image, dtype=np.float64)
    rng = np.random.default_rng(seed)
    output = np.asarray(denoise(y), dtype=np.float64)
    response = _detector(output, diameter)
    stein = 0.0
    noise_power = 0.0
    for _ in range(samples):
        u = spectrum.sample(y.shape, rng)
        change = (np.asarray(denoise(y + step * u), dtype=np.float64) - output) / step
        noise_response = _detector(u, diameter)
        stein += float(np.sum(noise_response * _detector(change, diameter))) / samples
        noise_power += float(np.sum(noise_response**2)) / samples
    clean_power = float(np.sum(_detector(y, diameter) ** 2)) - noise_power
    output_norm = math.sqrt(float(np.sum(response**2)))
    if clean_power <= 0 or output_norm == 0:
        return math.nan
    value = (float(np.sum(response * _detector(y, diameter))) - stein) / (
        output_norm * math.sqrt(clean_power)
    )
    return float(np.clip(value, -1.0, 1.0))
