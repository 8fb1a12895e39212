"""Gaussian filters by FFT: blur, difference of Gaussians. Pure, in torch (float64 in and
out, the FFTs in `FFT_DTYPE`): an image given as a tensor is filtered on its device and
stays there; one given as a numpy array is filtered on the CPU (sharing its memory) and
comes back as an array."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch

FFT_DTYPE = torch.float32
"""Precision of the FFTs of the filters and of the statistics' dilation (what goes in and
comes out is float64): twice as fast as float64 on a CPU, and the picking statistics stay
within 10⁻⁶ relative of float64's (candidate scores 10⁻⁴, the same candidates: tests/
test_stats_readiness.py), far below their own scatter."""
Image = TypeVar("Image", np.ndarray, torch.Tensor)
"""An image (..., H, W): a numpy array or a tensor; the filters give back the same kind."""


def as_tensor(
    image: np.ndarray | torch.Tensor, device: torch.device | str | None = None
) -> torch.Tensor:
    """`image` as a float64 tensor on `device` (default: a tensor's own device, else the
    CPU); a float64 array or tensor already there is shared, not copied."""
    if isinstance(image, torch.Tensor):
        return image.to(device=device or image.device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(image, dtype=np.float64), device=device)


def as_array(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """`image` as a numpy array (a CPU tensor's memory is shared, not copied)."""
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().numpy()
    return np.asarray(image)


def like(original: Image, result: torch.Tensor) -> Image:
    """`result` as the kind of `original`: a tensor stays, an array comes back."""
    return result if isinstance(original, torch.Tensor) else as_array(result)


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run torch's CPU work of the calling thread on `count` threads, then restore its count.
    With OpenMP (the backend of torch's CPU builds) the count is the calling thread's own,
    so other threads (the daemon's model stage) keep theirs; with another backend it would
    be the whole process's, so nothing changes there."""
    if not torch.backends.openmp.is_available():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fast_fft_length(n: int) -> int:
    """The smallest integer ≥ n (n ≥ 1) with no prime factor above 7: a length FFT
    libraries (pocketfft, MKL, cuFFT) transform several times faster than a neighbour with
    a large prime factor."""
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


@lru_cache(maxsize=16)
def rfft_weights(shape: tuple[int, int]) -> np.ndarray:
    """Weights (ny, nx//2+1) that turn a sum over the rfft2 half-plane of a real (H, W) =
    `shape` image into the sum over the full plane: 2 for the columns whose conjugates
    rfft2 leaves out, 1 for column 0 and, for even W, the Nyquist column (read-only:
    cached)."""
    weights = np.ones((shape[0], shape[1] // 2 + 1))
    weights[:, 1 : (shape[1] + 1) // 2] = 2.0
    weights.flags.writeable = False
    return weights


@lru_cache(maxsize=16)
def _transfer(
    shape: tuple[int, int],
    sigmas: tuple[float, ...],
    weights: tuple[float, ...],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Σ weight_i · `gaussian_transfer`(shape, σ_i) as a `dtype` tensor on `device`."""
    transfer = sum(
        weight * gaussian_transfer(shape, sigma)
        for sigma, weight in zip(sigmas, weights, strict=True)
    )
    return torch.as_tensor(transfer, dtype=dtype, device=device)


def reflected_indices(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices (before + n + after,) into an axis of length n that pad it by reflection
    about its first and last samples (numpy's "reflect", repeated for pads longer than n)."""
    index = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    index = index.remainder(period)
    return torch.where(index >= n, period - index, index)


Filter = tuple[tuple[float, float], ...]
"""A sum of Gaussian blurs: (σ pixels, weight) pairs; ((σ, 1.0),) is a blur, ((σ₁, 1.0),
(σ₂, −1.0)) a difference of Gaussians."""


def _filtered(image: torch.Tensor, bank: tuple[Filter, ...]) -> tuple[torch.Tensor, ...]:
    """Each filter of `bank` applied to a float64 tensor (..., H, W), float64, from one
    forward FFT and one inverse per filter, in `FFT_DTYPE` on its device: periodic
    boundary after a reflected pad of at least 3·max(σ) on every side, grown to fast FFT
    lengths so the edges do not wrap. The mean goes around the FFT (blurs keep it), so the
    FFT's rounding is relative to the image's variation, not to its level (counts)."""
    height, width = image.shape[-2:]
    largest = max(sigma for terms in bank for sigma, _ in terms)
    pad = min(int(3 * largest) + 1, height, width)
    rows, columns = (
        reflected_indices(n, pad, fast_fft_length(n + 2 * pad) - n - pad, image.device)
        for n in (height, width)
    )
    level = image.mean(dim=(-2, -1), keepdim=True)
    padded = (image - level).index_select(-2, rows).index_select(-1, columns).to(FFT_DTYPE)
    size = (len(rows), len(columns))
    spectrum = torch.fft.rfft2(padded)
    results = []
    for terms in bank:
        sigmas = tuple(float(sigma) for sigma, _ in terms)
        weights = tuple(float(weight) for _, weight in terms)
        transfer = _transfer(size, sigmas, weights, image.device, FFT_DTYPE)
        blurred = torch.fft.irfft2(spectrum * transfer, s=size)
        crop = blurred[..., pad : pad + height, pad : pad + width].to(torch.float64)
        results.append(crop + sum(weights) * level)
    return tuple(results)


def gaussian_filters(image: Image, bank: tuple[Filter, ...]) -> tuple[Image, ...]:
    """Several Gaussian filters (blurs, differences of Gaussians: `Filter`) of one image
    (..., H, W), sharing its forward FFT (edges reflected, not wrapped). Returns float64
    (..., H, W) per filter, of the kind of `image` (see the module)."""
    if min(sigma for terms in bank for sigma, _ in terms) <= 0:
        raise ValueError(f"every σ must be positive, got {bank}")
    return tuple(like(image, result) for result in _filtered(as_tensor(image), bank))


def gaussian_blur(image: Image, sigma: float) -> Image:
    """Blur (..., H, W) with a Gaussian of std `sigma` pixels (edges reflected, not
    wrapped). Returns float64 (..., H, W), of the kind of `image` (see the module)."""
    if sigma <= 0:
        return like(image, as_tensor(image).clone())
    return gaussian_filters(image, (((sigma, 1.0),),))[0]


def particle_scale(image: np.ndarray, diameter: float) -> np.ndarray:
    """(H, W) less its Gaussian low-pass of σ = D/2 (`diameter` D in pixels), float64: the
    structure at the particle scale and finer, without ice gradients."""
    data = np.asarray(image, dtype=np.float64)
    return data - as_array(gaussian_blur(data, diameter / 2))


def difference_of_gaussians(image: Image, sigma_small: float, sigma_large: float) -> Image:
    """Band-pass (..., H, W): blur(σ_small) − blur(σ_large), float64, both σ > 0 (pixels),
    of the kind of `image`."""
    if min(sigma_small, sigma_large) <= 0:
        raise ValueError(f"both σ must be positive, got {sigma_small} and {sigma_large}")
    return gaussian_filters(image, (((sigma_small, 1.0), (sigma_large, -1.0)),))[0]


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
