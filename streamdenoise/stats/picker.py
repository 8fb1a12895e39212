"""The built-in reference picker: dark blobs of the expected diameter.

A difference-of-Gaussians detector tuned to a disk of diameter D (σ = D/(2√2) for the
blob, 1.6× that for the surround), applied to the inverted image so that dark particles
give peaks; candidates are local maxima, non-maximum suppressed within `min_distance`.
Deliberately simple and fixed, so that it measures the image, not the picker.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamdenoise.stats.filters import difference_of_gaussians
from streamdenoise.stats.noise import mad_std


def blob_response(image: np.ndarray, diameter: float) -> np.ndarray:
    """Detector response (H, W) for dark blobs of `diameter` pixels, in units of its own
    robust std (median absolute deviation), so thresholds mean the same on any image."""
    sigma = diameter / (2 * math.sqrt(2))
    response = difference_of_gaussians(-np.asarray(image, dtype=np.float64), sigma, 1.6 * sigma)
    # The response is smooth over σ ≥ a few pixels: every other pixel gives the same
    # median and spread at a quarter of the sorting.
    sample = response[::2, ::2]
    centre = float(np.median(sample))
    return (response - centre) / max(mad_std(sample, centre), 1e-12)


def pick_particles(
    image: np.ndarray, diameter: float, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Pick dark particles of `diameter` pixels in `image` (H, W): `pick_peaks` (with its
    keyword `options`) on the image's `blob_response`."""
    return pick_peaks(blob_response(image, diameter), diameter, **options)


def pick_peaks(
    response: np.ndarray,
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
    # Local maxima in a 3×3 neighbourhood (the maximum filter done by rows, then columns).
    padded = np.pad(response, 1, mode="constant", constant_values=-np.inf)
    rows = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    neighbourhood = np.maximum(np.maximum(rows[:-2], rows[1:-1]), rows[2:])
    peaks = (response >= neighbourhood) & (response > threshold)
    if border > 0:
        peaks[:border], peaks[-border:], peaks[:, :border], peaks[:, -border:] = (False,) * 4
    ys, xs = np.nonzero(peaks)
    scores = response[ys, xs]
    order = np.argsort(-scores)
    kept: list[int] = []
    cell = max(min_distance, 1.0)
    grid: dict[tuple[int, int], list[int]] = {}
    for i in order:
        x, y = xs[i], ys[i]
        cx, cy = int(x // cell), int(y // cell)
        close = False
        for gx in range(cx - 1, cx + 2):
            for gy in range(cy - 1, cy + 2):
                for j in grid.get((gx, gy), ()):
                    if (xs[j] - x) ** 2 + (ys[j] - y) ** 2 < min_distance**2:
                        close = True
                        break
        if close:
            continue
        grid.setdefault((cx, cy), []).append(i)
        kept.append(i)
        if max_picks is not None and len(kept) >= max_picks:
            break
    kept_array = np.asarray(kept, dtype=np.int64)
    coordinates = np.stack([xs[kept_array], ys[kept_array]], axis=1).astype(np.float64)
    return coordinates.reshape(-1, 2), scores[kept_array]
