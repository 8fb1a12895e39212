"""The built-in reference picker: dark blobs of the expected diameter.

A difference-of-Gaussians detector tuned to a disk of diameter D (σ = D/(2√2) for the
blob, 1.6× that for the surround), applied to the inverted image so that dark particles
give peaks; candidates are local maxima, non-maximum suppressed within `min_distance`.
Deliberately simple and fixed, so that it measures the image, not the picker. The
filtering runs in torch, on the device of a tensor image (see `streamdenoise.stats.filters`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from streamdenoise.stats.filters import (
    FFT_DTYPE,
    Filter,
    Image,
    as_array,
    as_tensor,
    gaussian_filters,
    like,
)
from streamdenoise.stats.noise import mad_std, median


def blob_sigmas(diameter: float) -> tuple[float, float]:
    """The detector's σ (blob, surround) in pixels for particles of `diameter` pixels."""
    sigma = diameter / (2 * math.sqrt(2))
    return sigma, 1.6 * sigma


def blob_filter(diameter: float) -> Filter:
    """The detector's band as a `Filter`: the difference of Gaussians at
    `blob_sigmas(diameter)` of the inverted image, so that dark blobs give peaks."""
    sigma, surround = blob_sigmas(diameter)
    return ((sigma, -1.0), (surround, 1.0))


def blob_band(image: Image, diameter: float) -> Image:
    """The detector's band (H, W) float64 of `image` (`blob_filter`), in image units; of
    the kind of `image`."""
    return gaussian_filters(image, (blob_filter(diameter),))[0]


def robust_centre_and_spread(band: Image) -> tuple[float, float]:
    """Median and robust std (median absolute deviation) of `band` (..., H, W) from
    `blob_band`, the spread at least 1e-12."""
    # The band is smooth over σ ≥ a few pixels: every other pixel gives the same median
    # and spread at a quarter of the sorting.
    sample = as_tensor(band)[..., ::2, ::2]
    centre = median(sample)
    return centre, max(mad_std(sample, centre), 1e-12)


def in_robust_units(band: Image, units: tuple[float, float] | None = None) -> Image:
    """`band` (H, W) from `blob_band` less its median, over its robust std (median absolute
    deviation): the detector response, whose thresholds mean the same on any image. With
    `units`, (centre, spread) measured already (`robust_centre_and_spread`), or another
    band's spread to put both in the same units, instead."""
    centre, spread = units if units is not None else robust_centre_and_spread(band)
    return like(band, (as_tensor(band) - centre) / spread)


def blob_response(image: Image, diameter: float) -> Image:
    """Detector response (H, W) float64 for dark blobs of `diameter` pixels, in units of
    its own robust std (`in_robust_units` of `blob_band`), so thresholds mean the same on
    any image; of the kind of `image` (a tensor stays on its device)."""
    return in_robust_units(blob_band(image, diameter))


def template_band(image: Image, template: np.ndarray) -> Image:
    """Matched-filter band of `image` (..., H, W) (one or a stack) for `template` (h, w)
    or templates (K, h, w) (a particle as the micrograph shows it, dark, centred at
    (h // 2, w // 2), h and w at most the image's): the circular correlation of each image
    less its mean with each zero-mean template, highest at particles, computed in
    `FFT_DTYPE` on the image's device. (..., H, W), or (..., K, H, W) for K templates,
    float64 in the image's units, of the kind of `image`; `in_robust_units` makes it a
    response like `blob_response`."""
    data = as_tensor(image)
    height, width = data.shape[-2:]
    templates = np.asarray(template, dtype=np.float64)
    rows, columns = templates.shape[-2:]
    kernel = torch.zeros(
        (*templates.shape[:-2], height, width), dtype=FFT_DTYPE, device=data.device
    )
    zero_mean = templates - templates.mean(axis=(-2, -1), keepdims=True)
    kernel[..., :rows, :columns] = torch.as_tensor(zero_mean, dtype=FFT_DTYPE)
    kernel = torch.roll(kernel, (-(rows // 2), -(columns // 2)), dims=(-2, -1))
    centred = (data - data.mean(dim=(-2, -1), keepdim=True)).to(FFT_DTYPE)
    spectrum = torch.fft.rfft2(centred)
    if templates.ndim == 3:
        spectrum = spectrum[..., None, :, :]
    spectrum = spectrum * torch.conj(torch.fft.rfft2(kernel))
    return like(image, torch.fft.irfft2(spectrum, s=(height, width)).to(torch.float64))


def pick_particles(image: Image, diameter: float, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pick dark particles of `diameter` pixels in `image` (H, W): `pick_peaks` (with its
    keyword `options`) on the image's `blob_response`."""
    return pick_peaks(blob_response(image, diameter), diameter, **options)


def pick_peaks(
    response: Image,
    diameter: float,
    *,
    min_distance: float | None = None,
    threshold: float = -math.inf,
    max_picks: int | None = None,
    exclude_border: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of a detector response (H, W) from `blob_response` for particles of
    `diameter` pixels (one response can serve several pickings).

    Returns (coordinates (N, 2) as (x, y) pixels, scores (N,)), best first, the peaks above
    `threshold`. Candidates closer than `min_distance` (default 0.8·D) to a better one are
    dropped; those within `exclude_border` (default D/2) of the edge are ignored; at most
    `max_picks` are kept.
    """
    min_distance = 0.8 * diameter if min_distance is None else min_distance
    border = int(diameter / 2 if exclude_border is None else exclude_border)
    # Local maxima in a 3×3 neighbourhood, on the response's device (the maximum filter
    # done by rows, then columns: 5× faster than max_pool2d in float64 on a CPU).
    values = as_tensor(response)
    padded = F.pad(values, (1, 1, 1, 1), value=-math.inf)
    rows = torch.maximum(torch.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    neighbourhood = torch.maximum(torch.maximum(rows[:-2], rows[1:-1]), rows[2:])
    peaks = (values >= neighbourhood) & (values > threshold)
    if border > 0:
        peaks[:border], peaks[-border:], peaks[:, :border], peaks[:, -border:] = (False,) * 4
    ys, xs = (as_array(index) for index in torch.nonzero(peaks, as_tuple=True))
    scores = as_array(values[peaks])
    order = np.argsort(-scores)
    # Greedy suppression, best first: a peak is dropped when a kept one lies closer than
    # `min_distance`; each kept peak marks its disc on a raster (padded by the disc's
    # reach), so a test is one lookup, not a search.
    reach = max(math.ceil(min_distance), 1)
    offsets = np.arange(-reach, reach + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 < min_distance**2
    height, width = values.shape
    taken = np.zeros((height + 2 * reach, width + 2 * reach), dtype=bool)
    kept: list[int] = []
    for i, x, y in zip(order.tolist(), xs[order].tolist(), ys[order].tolist(), strict=True):
        if taken[y + reach, x + reach]:
            continue
        taken[y : y + 2 * reach + 1, x : x + 2 * reach + 1] |= disc
        kept.append(i)
        if max_picks is not None and len(kept) >= max_picks:
            break
    kept_array = np.asarray(kept, dtype=np.int64)
    coordinates = np.stack([xs[kept_array], ys[kept_array]], axis=1).astype(np.float64)
    return coordinates.reshape(-1, 2), scores[kept_array]
