"""Image measures at given particle positions. Pure: arrays in, numbers out.

The live picking-readiness statistics (`streamdenoise.stats.readiness`) take them at the
picker's candidates; the benchmarks take them at the true positions
(`streamdenoise.stats.ground_truth`, which holds the measures that need the truth).

Conventions: images (H, W), numpy arrays or tensors (filtered on their device, see
`streamdenoise.stats.filters`); particle coordinates (P, 2) as (x, y) pixels; the particle
diameter D in pixels. Particles are dark (lower values) in raw micrographs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from streamdenoise.stats.filters import (
    FFT_DTYPE,
    Filter,
    Image,
    as_array,
    as_tensor,
    gaussian_filters,
    rfft_weights,
)
from streamdenoise.stats.picker import blob_response


def disk_masks(shape: tuple[int, int], coordinates: np.ndarray, radius: float) -> np.ndarray:
    """Boolean (H, W), read-only: within `radius` px of any coordinate (N, 2) (x, y).

    Remembered for the last four calls: the readiness statistics ask for the same
    particles' discs in several measures (radii 0.4·D, D, 2·D and the empty-area radius; a
    Python loop over hundreds of candidates each time)."""
    points = np.round(np.asarray(coordinates, dtype=np.float64)).astype(np.int64).reshape(-1, 2)
    return _disks((int(shape[0]), int(shape[1])), points.tobytes(), float(radius))


@lru_cache(maxsize=4)
def _disks(shape: tuple[int, int], points: bytes, radius: float) -> np.ndarray:
    """`disk_masks` of the (x, y) int64 pairs packed in `points`."""
    mask = np.zeros(shape, dtype=bool)
    r = math.ceil(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = xx**2 + yy**2 <= radius**2
    for x, y in np.frombuffer(points, dtype=np.int64).reshape(-1, 2):
        y0, y1, x0, x1 = y - r, y + r + 1, x - r, x + r + 1
        sy, sx = slice(max(y0, 0), min(y1, shape[0])), slice(max(x0, 0), min(x1, shape[1]))
        if sy.start >= sy.stop or sx.start >= sx.stop:  # the disc misses the image
            continue
        mask[sy, sx] |= disk[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0]
    mask.setflags(write=False)
    return mask


def background_mask(
    shape: tuple[int, int], coordinates: np.ndarray, diameter: float, excluded=None
) -> np.ndarray:
    """Boolean (H, W): at least one diameter from every particle and not `excluded`."""
    mask = ~disk_masks(shape, coordinates, diameter)
    if excluded is not None:
        mask &= ~excluded
    return mask


def low_frequency_fraction(image: Image, diameter: float) -> float:
    """Fraction of the (non-DC) power of (H, W) below 1/(2·D) cycles/px, D in pixels (on
    the device of a tensor image; the FFT in `FFT_DTYPE` around the mean)."""
    data = as_tensor(image)
    spectrum = torch.fft.rfft2((data - data.mean()).to(FFT_DTYPE)).abs() ** 2
    weight, low = _power_weights(tuple(data.shape), diameter, data.device)
    total = float((spectrum * weight).sum())
    return float((spectrum * low).sum()) / max(total, 1e-30)


@lru_cache(maxsize=16)
def _power_weights(
    shape: tuple[int, int], diameter: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """rfft2 weights (ny, nx//2+1) that sum the power of a real (H, W) = `shape` image
    (`rfft_weights`): over all coefficients, and over those below 1/(2·D) only."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.hypot(fx, fy)
    weight = rfft_weights(shape)
    low = weight * ((k > 0) & (k < 1 / (2 * diameter)))
    return (
        torch.tensor(weight, dtype=FFT_DTYPE, device=device),  # a copy: `weight` is read-only
        torch.tensor(low, dtype=FFT_DTYPE, device=device),
    )


def particle_contrast(image: np.ndarray, coordinates: np.ndarray, diameter: float) -> float:
    """|mean inside particle disks (0.4·D) − mean of the background (≥ D away)|."""
    image = np.asarray(image, dtype=np.float64)
    inside = disk_masks(image.shape, coordinates, 0.4 * diameter)
    outside = background_mask(image.shape, coordinates, diameter)
    return abs(float(image[inside].mean() - image[outside].mean()))


def flatness_filter(diameter: float) -> Filter:
    """The blur of `background_flatness` as a `Filter`: σ = D/2 (D in pixels)."""
    return ((diameter / 2, 1.0),)


def background_flatness(
    image: Image, coordinates: np.ndarray, diameter: float, blurred: Image | None = None
) -> float:
    """Std of the D/2-blurred background over the particle contrast (lower is flatter);
    `blurred`: `image` through `flatness_filter(diameter)` when the caller has it."""
    if blurred is None:
        blurred = gaussian_filters(image, (flatness_filter(diameter),))[0]
    blurred = as_array(blurred)
    outside = background_mask(blurred.shape, coordinates, diameter)
    return float(blurred[outside].std()) / max(
        particle_contrast(as_array(image), coordinates, diameter), 1e-30
    )


@dataclass(frozen=True)
class Separability:
    """Fixed detector's score at true positions vs background: CNR, d′, ROC AUC."""

    cnr: float
    d_prime: float
    auc: float


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with ties counted half)."""
    scores = np.concatenate([positives, negatives])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ranks of ties
    unique, inverse, counts = np.unique(sorted_scores, return_inverse=True, return_counts=True)
    if len(unique) < len(scores):
        sums = np.bincount(inverse, weights=np.arange(1, len(scores) + 1))
        ranks[order] = (sums / counts)[inverse]
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def separability(
    image: Image,
    coordinates: np.ndarray,
    diameter: float,
    rng: np.random.Generator,
    excluded=None,
    negatives: int = 2000,
    response: Image | None = None,
) -> Separability:
    """Blob-detector response at true particle centres vs random background points
    (`response`: `blob_response(image, diameter)` when the caller has it already)."""
    response = as_array(blob_response(image, diameter) if response is None else response)
    points = np.round(coordinates).astype(int)
    positive = response[points[:, 1], points[:, 0]]
    free = np.argwhere(background_mask(response.shape, coordinates, diameter, excluded))
    chosen = free[rng.choice(len(free), size=min(negatives, len(free)), replace=False)]
    negative = response[chosen[:, 0], chosen[:, 1]]
    difference = positive.mean() - negative.mean()
    return Separability(
        cnr=float(difference / max(negative.std(), 1e-30)),
        d_prime=float(difference / max(math.sqrt((positive.var() + negative.var()) / 2), 1e-30)),
        auc=roc_auc(positive, negative),
    )
