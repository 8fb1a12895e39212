"""The noise spectrum of one micrograph, from the micrograph alone. Pure numpy (the robust
σ of the picking statistics, `mad_std` and `robust_noise_sigma`, also on tensors).

Model: white shot (and read-out) noise of variance σ_w² per pixel, passed through the
interpolation of motion correction: every frame is shifted by a sub-pixel amount d and
resampled linearly before the frames are summed, which multiplies the noise power along
each axis by E_d[|(1 − d) + d·e^{−2πik}|²] = 1 − 2m(1 − cos 2πk), m = E[d(1 − d)] ∈ [0, ¼]:

    N(k_x, k_y) = σ_w² · f_m(k_x) · f_m(k_y),    f_m(k) = 1 − 2m(1 − cos 2πk).

m = 0 is white noise (counting data, or data binned well below the detector's Nyquist);
m = 1/6 is the average over uniformly random shifts. The per-pixel noise variance is the
spectrum's mean, σ² = σ_w² (1 − 2m)².

Both parameters are fitted (maximum likelihood for a periodogram, exponentially distributed
about the spectrum) to the Hann-windowed periodogram at |k| > `NOISE_ANNULUS` cycles/px,
where the particle and ice signal is negligible after the CTF envelope, the detector MTF
and the B-factor. Signal left there biases σ upward by its share of the power; a scale
factor (gain) or an offset changes nothing but σ's units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

from streamdenoise.stats.filters import as_array, as_tensor

NOISE_ANNULUS = 0.3
"""Inner radius (cycles/pixel) of the Fourier region the noise model is fitted to."""
COARSE_STEP = 0.04
FINE_STEP = 0.01
MAX_INTERPOLATION = 0.24
"""m is searched on a coarse then a fine grid up to this (¼ would null Nyquist)."""
MAX_COEFFICIENTS = 60_000
"""The fit uses at most this many Fourier coefficients (an even subsample), for speed."""


def radial_band_index(shape: tuple[int, int], bands: int) -> np.ndarray:
    """Band number (0 … bands−1, equal widths up to Nyquist) of each rfft2 coefficient of
    an (H, W) image; −1 for DC and for the corners beyond Nyquist."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.hypot(fx, fy)
    index = np.floor(k / 0.5 * bands).astype(np.int64)
    index[(k == 0) | (index >= bands)] = -1
    return index


def interpolation_power(k: np.ndarray, m: float) -> np.ndarray:
    """f_m(k) = 1 − 2m(1 − cos 2πk): one axis's noise power after linear interpolation."""
    return 1.0 - 2.0 * m * (1.0 - np.cos(2 * math.pi * k))


@dataclass(frozen=True)
class NoiseSpectrum:
    """Fitted noise model: white variance σ_w² per pixel and interpolation parameter m."""

    white_variance: float
    interpolation: float

    @property
    def pixel_sigma(self) -> float:
        """σ, the per-pixel noise std: √(σ_w²) (1 − 2m)."""
        return math.sqrt(self.white_variance) * (1.0 - 2.0 * self.interpolation)

    def scaled(self, factor: float) -> NoiseSpectrum:
        """The spectrum of the same noise in units `factor` times larger (of data × factor)."""
        return replace(self, white_variance=self.white_variance * factor**2)

    def sample(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """A noise image (H, W) float64 drawn from this spectrum (Gaussian, stationary)."""
        fy = np.fft.fftfreq(shape[0])[:, None]
        fx = np.fft.rfftfreq(shape[1])[None, :]
        amplitude = np.sqrt(
            self.white_variance
            * interpolation_power(fy, self.interpolation)
            * interpolation_power(fx, self.interpolation)
        )
        white = np.fft.rfft2(rng.standard_normal(shape))
        return np.fft.irfft2(white * amplitude, s=shape)

    def band_shape(self, shape: tuple[int, int], bands: int) -> np.ndarray:
        """Mean noise power of each of `bands` radial bands (up to Nyquist) of an rfft2 of
        an image of `shape`, relative to σ² (1 everywhere for white noise): (bands,)."""
        fy = np.fft.fftfreq(shape[0])[:, None]
        fx = np.fft.rfftfreq(shape[1])[None, :]
        power = interpolation_power(fy, self.interpolation) * interpolation_power(
            fx, self.interpolation
        )
        index = radial_band_index(shape, bands)
        valid = index >= 0
        total = np.bincount(index[valid], power[valid], minlength=bands)
        count = np.bincount(index[valid], minlength=bands)
        relative = total / np.maximum(count, 1) / (1.0 - 2.0 * self.interpolation) ** 2
        return np.where(count > 0, relative, 1.0)


@dataclass(frozen=True)
class _FitGeometry:
    """What the fit needs of an image size: the Hann window (H, W) and its Σw², the flat
    indices of the rfft2 coefficients it uses (beyond `NOISE_ANNULUS`, evenly subsampled
    to `MAX_COEFFICIENTS`) and their 1 − cos 2πk along y and x."""

    window: torch.Tensor
    window_power: float
    used: torch.Tensor
    cy: np.ndarray
    cx: np.ndarray


@lru_cache(maxsize=8)
def _fit_geometry(shape: tuple[int, int]) -> _FitGeometry:
    """`_FitGeometry` of an (H, W) image, computed once per size."""
    h, w = shape
    window = np.outer(np.hanning(h), np.hanning(w))
    fy = np.broadcast_to(np.fft.fftfreq(h)[:, None], (h, w // 2 + 1))
    fx = np.broadcast_to(np.fft.rfftfreq(w)[None, :], (h, w // 2 + 1))
    outer = np.flatnonzero(fy**2 + fx**2 > NOISE_ANNULUS**2)
    used = outer[:: max(1, len(outer) // MAX_COEFFICIENTS)]
    return _FitGeometry(
        torch.from_numpy(window.astype(np.float32)),
        float(np.sum(window**2)),
        torch.from_numpy(used),
        1 - np.cos(2 * math.pi * fy.ravel()[used]),
        1 - np.cos(2 * math.pi * fx.ravel()[used]),
    )


def estimate_noise_spectrum(image: np.ndarray) -> NoiseSpectrum:
    """Fit the noise model to one image (H, W), H, W >= 8 (module docstring). The
    periodogram in single precision (its rounding, ~1e-7, is far below its own scatter)."""
    data = np.asarray(image)
    if data.ndim != 2 or min(data.shape) < 8:
        raise ValueError(f"need a 2-D image of at least 8×8 pixels, got shape {data.shape}")
    geometry = _fit_geometry(data.shape)
    centred = torch.from_numpy(np.asarray(data - data.mean(dtype=np.float64), np.float32))
    coefficients = torch.fft.rfft2(centred * geometry.window).reshape(-1)[geometry.used]
    power = coefficients.abs().square().double().numpy() / geometry.window_power
    cy, cx = geometry.cy, geometry.cx

    def fit(m: float) -> tuple[float, float]:
        """(log-likelihood, σ_w²) of the model with interpolation m."""
        shape = (1 - 2 * m * cy) * (1 - 2 * m * cx)
        scale = float(np.mean(power / shape))
        if scale <= 0:
            return -math.inf, 0.0
        return -float(np.sum(np.log(scale * shape))) - power.size, scale

    coarse = np.arange(0.0, MAX_INTERPOLATION + 1e-9, COARSE_STEP)
    centre = max(coarse, key=lambda m: fit(m)[0])
    fine = np.arange(centre - COARSE_STEP, centre + COARSE_STEP + 1e-9, FINE_STEP)
    fine = fine[(fine >= 0) & (fine <= MAX_INTERPOLATION)]
    best = max(fine, key=lambda m: fit(m)[0])
    return NoiseSpectrum(fit(best)[1], float(best))


def estimate_noise_sigma(normed: np.ndarray) -> float:
    """Noise std σ̂ per pixel of a normalised micrograph (H, W), H, W >= 8, in normalised
    units: the noise spectrum fitted at high frequencies, white or low-pass correlated by
    motion correction's interpolation (the module's docstring). Right for counts,
    scaled and correlated noise; biased upward by signal left near Nyquist."""
    return estimate_noise_spectrum(normed).pixel_sigma


def median(values: np.ndarray | torch.Tensor) -> float:
    """Median of all of `values` (array or tensor, on its device): numpy's, the mean of the
    two middle values for an even count. On a CPU numpy's selection (no copy), several
    times faster than torch's."""
    if not isinstance(values, torch.Tensor) or values.device.type == "cpu":
        return float(np.median(as_array(values)))
    flat = values.reshape(-1)
    count = flat.numel()
    low = flat.kthvalue((count + 1) // 2).values
    high = low if count % 2 else flat.kthvalue(count // 2 + 1).values
    return float((low + high) / 2)


def mad_std(values: np.ndarray | torch.Tensor, centre: float | None = None) -> float:
    """1.4826 × the median absolute deviation of `values` (any shape; array or tensor)
    from `centre` (their median when None): the std of Gaussian data, robust to outliers
    (particles, peaks)."""
    if not isinstance(values, torch.Tensor):
        values = np.asarray(values)
    middle = median(values) if centre is None else centre
    return 1.4826 * median(abs(values - middle))


NOISE_DIFFERENCES = 50_000
"""About how many adjacent-pixel differences `robust_noise_sigma` samples (on a small image:
those of every other row and column)."""


def robust_noise_sigma(image: np.ndarray | torch.Tensor) -> float:
    """Pixel noise σ (image units) of (H, W) (array, or tensor on its device) from
    differences of adjacent pixels: 1.4826·MAD/√2 of the horizontal and vertical
    differences, i.e. the σ of white noise that would give them. Structure at the particle
    scale barely changes adjacent pixels. (The picking statistics report it; the denoiser
    uses `estimate_noise_sigma`.)"""
    data = as_tensor(image)
    height, width = data.shape
    # About NOISE_DIFFERENCES differences, from every s-th row and column (s ≥ 2), pin the
    # median as well as all of them (its relative error ≈ 1.4/√n, 0.6 %) at less sorting.
    step = max(2, math.isqrt(2 * height * width // NOISE_DIFFERENCES))
    vertical = data[1::step, ::step] - data[: height - 1 : step, ::step]
    horizontal = data[::step, 1::step] - data[::step, : width - 1 : step]
    differences = torch.cat([vertical.reshape(-1), horizontal.reshape(-1)])
    return mad_std(differences) / math.sqrt(2)
