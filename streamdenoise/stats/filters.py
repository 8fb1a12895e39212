"""Gaussian filters by FFT (pure numpy): blur, difference of Gaussians."""

from __future__ import annotations

import math

import numpy as np


def gaussian_transfer(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """rfft2 transfer function (ny, nx//2+1) of a Gaussian blur of std `sigma` pixels."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-2 * math.pi**2 * sigma**2 * (fx**2 + fy**2))


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur (H, W) with a Gaussian of std `sigma` pixels (periodic boundary after a
    reflected pad of 3σ, so edges do not wrap). Returns float64 (H, W)."""
    if sigma <= 0:
        return np.asarray(image, dtype=np.float64).copy()
    pad = min(int(3 * sigma) + 1, *image.shape)
    padded = np.pad(np.asarray(image, dtype=np.float64), pad, mode="reflect")
    blurred = np.fft.irfft2(
        np.fft.rfft2(padded) * gaussian_transfer(padded.shape, sigma), s=padded.shape
    )
    return blurred[pad:-pad, pad:-pad]


def difference_of_gaussians(image: np.ndarray, sigma_small: float, sigma_large: float):
    """Band-pass (H, W): blur(σ_small) − blur(σ_large), float64."""
    return gaussian_blur(image, sigma_small) - gaussian_blur(image, sigma_large)
