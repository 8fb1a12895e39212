"""Quality against ground truth (METHOD §6), for the benchmarks and tests only: the clean
image or the true particle positions are known. Pure: arrays in, numbers out. The live
daemon never imports it (tests/test_layers.py); the measures it shares with the live
statistics are in `streamdenoise.stats.measures`.

Conventions: images (H, W); particle coordinates (P, 2) as (x, y) pixels; the particle
diameter D in pixels. Particles are dark (lower values) in raw micrographs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamdenoise.stats.filters import gaussian_blur, particle_scale
from streamdenoise.stats.measures import background_mask, disk_masks
from streamdenoise.stats.picker import pick_particles


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
    return psnr(particle_scale(image, diameter), particle_scale(clean, diameter))


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
        signal = disk_masks(image.shape, point[None], 0.4 * diameter)
        ring = disk_masks(image.shape, point[None], 1.5 * diameter) & free
        if signal.sum() < 3 or ring.sum() < 10:
            continue
        background = image[ring]
        contrast = image[signal].mean() - background.mean()
        values.append(10 * math.log10(max(contrast**2, 1e-30) / max(background.var(), 1e-30)))
    return float(np.mean(values)) if values else float("nan")


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
