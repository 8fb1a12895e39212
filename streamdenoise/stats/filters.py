"""Gaussian filters by FFT (pure numpy): blur, difference of Gaussians."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def fast_fft_length(n: int) -> int:
    """The smallest integer ≥ n (n ≥ 1) with no prime factor above 7: a length pocketfft
    transforms several times faster than a neighbour with a large prime factor."""
    length = max(n, 1)
    while True:
        rest = length
        for prime in (2, 3, 5, 7):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return length
        length += 1


@lru_cache(maxsize=16)
def gaussian_transfer(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """rfft2 transfer function (ny, nx//2+1) of a Gaussian blur of std `sigma` pixels
    (read-only: cached, since a session's micrographs share their shapes)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    transfer = np.exp(-2 * math.pi**2 * sigma**2 * (fx**2 + fy**2))
    transfer.flags.writeable = False
    return transfer


def _filtered(image: np.ndarray, sigmas: tuple[float, ...], weights: tuple[float, ...]):
    """Σ weight_i · blur(image, σ_i) of (H, W), float64, with one forward and one inverse
    FFT: periodic boundary after a reflected pad of at least 3·max(σ) on every side,
    grown to fast FFT lengths so the edges do not wrap."""
    data = np.asarray(image, dtype=np.float64)
    pad = min(int(3 * max(sigmas)) + 1, *data.shape)
    widths = [(pad, fast_fft_length(n + 2 * pad) - n - pad) for n in data.shape]
    padded = np.pad(data, widths, mode="reflect")
    transfer = sum(
        weight * gaussian_transfer(tuple(padded.shape), float(sigma))
        for sigma, weight in zip(sigmas, weights, strict=True)
    )
    blurred = np.fft.irfft2(np.fft.rfft2(padded) * transfer, s=padded.shape)
    return blurred[pad : pad + data.shape[0], pad : pad + data.shape[1]]


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur (H, W) with a Gaussian of std `sigma` pixels (edges reflected, not wrapped).
    Returns float64 (H, W)."""
    if sigma <= 0:
        return np.asarray(image, dtype=np.float64).copy()
    return _filtered(image, (sigma,), (1.0,))


def difference_of_gaussians(image: np.ndarray, sigma_small: float, sigma_large: float):
    """Band-pass (H, W): blur(σ_small) − blur(σ_large), float64, both σ > 0 (pixels)."""
    if min(sigma_small, sigma_large) <= 0:
        raise ValueError(f"both σ must be positive, got {sigma_small} and {sigma_large}")
    return _filtered(image, (sigma_small, sigma_large), (1.0, -1.0))


def flatten_background(image: np.ndarray, sigma: float) -> np.ndarray:
    """Remove the slowly varying background of (H, W): the least-squares plane (an ice
    gradient, which a reflected edge would bend) and then the Gaussian low-pass of std
    `sigma` pixels (> 0) of what is left; the image's mean is kept. Returns float32."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    data = np.asarray(image, dtype=np.float64)
    yy, xx = np.mgrid[0 : data.shape[0], 0 : data.shape[1]]
    design = np.stack([np.ones(data.size), yy.ravel(), xx.ravel()], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, data.ravel(), rcond=None)
    residual = data - (design @ coefficients).reshape(data.shape)
    return (residual - gaussian_blur(residual, sigma) + data.mean()).astype(np.float32)
