"""Noise that is not raw Poisson counts, applied to a simulated (noisy, clean) pair.

Pure numpy. Real micrographs reach the denoiser gain-normalised and rescaled (EPU writes
scaled integers, other pipelines floats), with detector read-out and inelastic-scattering
noise on top of shot noise, and low-pass correlated by the interpolation of motion
correction (each frame shifted by a sub-pixel amount, then summed). Each function takes
and returns the pair (noisy (H, W), clean (H, W)) so a training target stays the noise-free
counterpart of its input.
"""

from __future__ import annotations

import math

import numpy as np


def rescale(
    noisy: np.ndarray, clean: np.ndarray, gain: float, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gain-scaled, offset data: (gain · noisy + offset, gain · clean + offset)."""
    if gain <= 0:
        raise ValueError(f"gain must be > 0, got {gain}")
    return (gain * noisy + offset).astype(np.float32), (gain * clean + offset).astype(np.float32)


def add_read_noise(
    noisy: np.ndarray, clean: np.ndarray, factor: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Extra signal-independent Gaussian noise of std `factor` × √(mean count) per pixel
    (read-out, inelastic background): the shot noise's variance grows by factor²."""
    if factor < 0:
        raise ValueError(f"factor must be ≥ 0, got {factor}")
    std = factor * math.sqrt(max(float(np.mean(clean)), 0.0))
    return (noisy + rng.normal(0.0, std, noisy.shape)).astype(np.float32), clean


def interpolation_transfers(
    shape: tuple[int, int], shifts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """rfft2 transfers (ny, nx//2+1) of summing frames shifted by sub-pixel `shifts` (F, 2)
    (dy, dx in pixels) with bilinear interpolation, per frame T_f = the product of the
    per-axis responses (1 − d) + d·e^{−2πik}: (signal, noise). The aligned signal passes
    mean_f |T_f| (the phase is the intended shift); each frame's independent noise passes
    with power mean_f |T_f|², i.e. amplitude √(mean_f |T_f|²)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    amplitude = np.zeros((shape[0], shape[1] // 2 + 1))
    power = np.zeros_like(amplitude)
    for dy, dx in np.asarray(shifts, dtype=np.float64) % 1.0:
        along_y = np.abs((1 - dy) + dy * np.exp(-2j * math.pi * fy))
        along_x = np.abs((1 - dx) + dx * np.exp(-2j * math.pi * fx))
        amplitude += along_y * along_x
        power += (along_y * along_x) ** 2
    return amplitude / len(shifts), np.sqrt(power / len(shifts))


def correlate(
    noisy: np.ndarray, clean: np.ndarray, frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Low-pass correlated noise as motion correction leaves it: `frames` frames aligned
    with random sub-pixel shifts (bilinear); signal and noise filtered by their transfers
    (`interpolation_transfers`)."""
    if frames < 1:
        raise ValueError(f"frames must be ≥ 1, got {frames}")
    signal, noise = interpolation_transfers(noisy.shape, rng.uniform(0, 1, (frames, 2)))

    def apply(image: np.ndarray, transfer: np.ndarray) -> np.ndarray:
        return np.fft.irfft2(np.fft.rfft2(image) * transfer, s=image.shape)

    filtered_clean = apply(clean, signal)
    filtered_noise = apply(np.asarray(noisy, np.float64) - clean, noise)
    return (filtered_clean + filtered_noise).astype(np.float32), filtered_clean.astype(np.float32)
