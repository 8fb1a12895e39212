"""Quality against ground truth (METHOD §6). Pure: arrays in, numbers out.

Conventions: images (H, W); particle coordinates (P, 2) as (x, y) pixels; the particle
diameter D in pixels. Particles are dark (lower values) in raw micrographs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamdenoise.stats.filters import gaussian_blur
from streamdenoise.stats.picker import blob_response, pick_particles


def affine_fit(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """a·image + b fitted to `reference` by least squares (the intensity scale is arbitrary)."""
    x = np.asarray(image, dtype=np.float64).ravel()
    y = np.asarray(reference, dtype=np.float64).ravel()
    design = np.stack([x, np.ones_like(x)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    return (a * np.asarray(image, dtype=np.float64) + b).reshape(np.shape(image))


def psnr(image: np.ndarray, clean: np.ndarray) -> float:
    """PSNR in dB of `image` against `clean` after an affine intensity fit; the peak is the
    clean image's range (max − min)."""
    fitted = affine_fit(image, clean)
    mse = float(np.mean((fitted - clean) ** 2))
    peak = float(np.ptp(clean))
    return 10 * math.log10(peak**2 / max(mse, 1e-30))


def ssim(image: np.ndarray, clean: np.ndarray, sigma: float = 1.5) -> float:
    """Mean structural similarity (Gaussian window of std `sigma` px) after an affine fit."""
    x = affine_fit(image, clean)
    y = np.asarray(clean, dtype=np.float64)
    peak = float(np.ptp(y))
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mx, my = gaussian_blur(x, sigma), gaussian_blur(y, sigma)
    vx = gaussian_blur(x * x, sigma) - mx**2
    vy = gaussian_blur(y * y, sigma) - my**2
    cxy = gaussian_blur(x * y, sigma) - mx * my
    value = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(value.mean())


def highpass_psnr(image: np.ndarray, clean: np.ndarray, diameter: float) -> float:
    """Particle-scale fidelity: PSNR after removing a Gaussian low-pass (σ = D/2) from both,
    so that keeping or removing an ice gradient is neither rewarded nor punished."""
    sigma = diameter / 2
    image_high = np.asarray(image, dtype=np.float64) - gaussian_blur(image, sigma)
    clean_high = np.asarray(clean, dtype=np.float64) - gaussian_blur(clean, sigma)
    return psnr(image_high, clean_high)


def _disk_masks(shape: tuple[int, int], coordinates: np.ndarray, radius: float) -> np.ndarray:
    """Boolean (H, W): within `radius` px of any coordinate."""
    mask = np.zeros(shape, dtype=bool)
    r = math.ceil(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = xx**2 + yy**2 <= radius**2
    for x, y in np.round(coordinates).astype(int):
        y0, y1, x0, x1 = y - r, y + r + 1, x - r, x + r + 1
        sy, sx = slice(max(y0, 0), min(y1, shape[0])), slice(max(x0, 0), min(x1, shape[1]))
        mask[sy, sx] |= disk[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0]
    return mask


def background_mask(
    shape: tuple[int, int], coordinates: np.ndarray, diameter: float, excluded=None
) -> np.ndarray:
    """Boolean (H, W): at least one diameter from every particle and not `excluded`."""
    mask = ~_disk_masks(shape, coordinates, diameter)
    if excluded is not None:
        mask &= ~excluded
    return mask


def particle_snr_db(
    image: np.ndarray, coordinates: np.ndarray, diameter: float, excluded=None
) -> float:
    """Topaz-Denoise's SNR in dB: mean over particles of
    10·log10((μ_signal − μ_background)² / σ²_background), signal in a disk of radius 0.4·D
    at the true position, background its surroundings 1–1.5·D away that are ≥ D from every
    particle (and not `excluded`, e.g. carbon)."""
    image = np.asarray(image, dtype=np.float64)
    free = background_mask(image.shape, coordinates, diameter, excluded)
    values = []
    for point in coordinates:
        signal = _disk_masks(image.shape, point[None], 0.4 * diameter)
        ring = _disk_masks(image.shape, point[None], 1.5 * diameter) & free
        if signal.sum() < 3 or ring.sum() < 10:
            continue
        background = image[ring]
        contrast = image[signal].mean() - background.mean()
        values.append(10 * math.log10(max(contrast**2, 1e-30) / max(background.var(), 1e-30)))
    return float(np.mean(values)) if values else float("nan")


def low_frequency_fraction(image: np.ndarray, diameter: float) -> float:
    """Fraction of the (non-DC) power below 1/(2·D) cycles/px, D in pixels."""
    spectrum = np.abs(np.fft.rfft2(np.asarray(image, dtype=np.float64) - np.mean(image))) ** 2
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.rfftfreq(image.shape[1])[None, :]
    k = np.hypot(fx, fy)
    weight = np.ones_like(k)
    weight[:, 1:-1] = 2  # rfft halves: interior columns stand for two coefficients
    total = float((spectrum * weight).sum())
    low = float((spectrum * weight)[(k > 0) & (k < 1 / (2 * diameter))].sum())
    return low / max(total, 1e-30)


def particle_contrast(image: np.ndarray, coordinates: np.ndarray, diameter: float) -> float:
    """|mean inside particle disks (0.4·D) − mean of the background (≥ D away)|."""
    image = np.asarray(image, dtype=np.float64)
    inside = _disk_masks(image.shape, coordinates, 0.4 * diameter)
    outside = background_mask(image.shape, coordinates, diameter)
    return abs(float(image[inside].mean() - image[outside].mean()))


def background_flatness(image: np.ndarray, coordinates: np.ndarray, diameter: float) -> float:
    """Std of the D/2-blurred background over the particle contrast (lower is flatter)."""
    blurred = gaussian_blur(image, diameter / 2)
    outside = background_mask(np.shape(image), coordinates, diameter)
    return float(blurred[outside].std()) / max(
        particle_contrast(image, coordinates, diameter), 1e-30
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
    image: np.ndarray,
    coordinates: np.ndarray,
    diameter: float,
    rng: np.random.Generator,
    excluded=None,
    negatives: int = 2000,
    response: np.ndarray | None = None,
) -> Separability:
    """Blob-detector response at true particle centres vs random background points
    (`response`: `blob_response(image, diameter)` when the caller has it already)."""
    response = blob_response(image, diameter) if response is None else response
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


@dataclass(frozen=True)
class PickingScore:
    """Picks matched to truth within 0.5·D: precision, recall, F1 at the best-F1 score
    threshold, and average precision over the ranked picks."""

    precision: float
    recall: float
    f1: float
    average_precision: float


def match_picks(picks: np.ndarray, truth: np.ndarray, radius: float) -> np.ndarray:
    """For picks ranked best first (N, 2), whether each is a true positive (N,) bool:
    greedy matching to the nearest unmatched true position within `radius`."""
    matched = np.zeros(len(truth), dtype=bool)
    hits = np.zeros(len(picks), dtype=bool)
    for i, point in enumerate(picks):
        if not len(truth):
            break
        distance = np.linalg.norm(truth - point, axis=1)
        distance[matched] = np.inf
        j = int(np.argmin(distance))
        if distance[j] <= radius:
            matched[j] = True
            hits[i] = True
    return hits


def picking_score(hits: np.ndarray, total_true: int) -> PickingScore:
    """Scores of a ranked list of pick outcomes (`match_picks`) against `total_true`."""
    if total_true == 0 or len(hits) == 0:
        return PickingScore(0.0, 0.0, 0.0, 0.0)
    true_positives = np.cumsum(hits)
    precision = true_positives / np.arange(1, len(hits) + 1)
    recall = true_positives / total_true
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-30)
    best = int(np.argmax(f1))
    average_precision = float(np.sum(precision * hits) / total_true)
    return PickingScore(
        float(precision[best]), float(recall[best]), float(f1[best]), average_precision
    )


def pick_and_score(
    image: np.ndarray, coordinates: np.ndarray, diameter: float
) -> tuple[np.ndarray, PickingScore]:
    """Run the reference picker on `image` and score it against the true coordinates."""
    picks, _ = pick_particles(image, diameter, max_picks=4 * max(len(coordinates), 1))
    hits = match_picks(picks, coordinates, 0.5 * diameter)
    return hits, picking_score(hits, len(coordinates))
