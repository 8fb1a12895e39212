"""Ground-truth quality metrics and the reference picker on images with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamdenoise.stats.filters import difference_of_gaussians, fast_fft_length, gaussian_blur
from streamdenoise.stats.ground_truth import (
    affine_fit,
    highpass_psnr,
    match_picks,
    particle_snr_db,
    pick_and_score,
    picking_score,
    psnr,
    ssim,
)
from streamdenoise.stats.measures import (
    background_flatness,
    disk_masks,
    low_frequency_fraction,
    roc_auc,
    separability,
)
from streamdenoise.stats.picker import blob_response, pick_particles, pick_peaks

DIAMETER = 12.0


def field_of_blobs(seed: int = 0, size: int = 160, count: int = 20):
    """Dark disks of DIAMETER px on a flat background: (image, coordinates)."""
    rng = np.random.default_rng(seed)
    coordinates = []
    while len(coordinates) < count:
        point = rng.uniform(DIAMETER, size - DIAMETER, 2)
        if all(np.hypot(*(point - c)) > 2 * DIAMETER for c in coordinates):
            coordinates.append(point)
    coordinates = np.array(coordinates)
    yy, xx = np.mgrid[0:size, 0:size]
    image = np.zeros((size, size))
    for x, y in coordinates:
        image -= np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (DIAMETER / 4) ** 2))
    return image, coordinates


def test_affine_fit_and_psnr_ignore_scale_and_offset() -> None:
    clean, _ = field_of_blobs()
    assert np.allclose(affine_fit(3 * clean + 7, clean), clean)
    assert psnr(3 * clean + 7, clean) > 100
    noisy = clean + np.random.default_rng(0).normal(0, 0.1, clean.shape)
    # The least-squares fit shrinks the noise: MSE = v·σ²/(v + σ²), v the clean variance.
    v = clean.var()
    expected = 10 * math.log10(np.ptp(clean) ** 2 / (v * 0.01 / (v + 0.01)))
    assert psnr(noisy, clean) == pytest.approx(expected, abs=0.3)
    assert ssim(clean, clean) == pytest.approx(1.0)
    assert ssim(noisy, clean) < ssim(gaussian_blur(noisy, 1.0), clean) < 1.0


def test_highpass_psnr_ignores_a_gradient() -> None:
    clean, _ = field_of_blobs()
    gradient = np.linspace(0, 5, clean.shape[1])[None, :] * np.ones_like(clean)
    assert highpass_psnr(clean + gradient, clean, DIAMETER) > psnr(clean + gradient, clean) + 10


def test_snr_db_matches_the_construction() -> None:
    clean, coordinates = field_of_blobs()
    noise_sigma = 0.5
    noisy = clean + np.random.default_rng(1).normal(0, noise_sigma, clean.shape)
    # Mean contrast inside r = 0.4·D of a Gaussian blob with σ = D/4, against noise σ.
    r = 0.4 * DIAMETER
    s = DIAMETER / 4
    contrast = (2 * s**2 / r**2) * (1 - math.exp(-(r**2) / (2 * s**2)))
    expected = 10 * math.log10(contrast**2 / noise_sigma**2)
    assert particle_snr_db(noisy, coordinates, DIAMETER) == pytest.approx(expected, abs=1.0)


def test_low_frequency_fraction_and_flatness() -> None:
    clean, coordinates = field_of_blobs()
    gradient = np.linspace(0, 3, clean.shape[1])[None, :] * np.ones_like(clean)
    assert low_frequency_fraction(clean + gradient, DIAMETER) > 0.8
    assert low_frequency_fraction(clean, DIAMETER) < 0.5
    assert background_flatness(clean + gradient, coordinates, DIAMETER) > 5 * background_flatness(
        clean + 1e-3 * np.random.default_rng(2).standard_normal(clean.shape), coordinates, DIAMETER
    )


def test_roc_auc_known_values() -> None:
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5


def test_separability_grows_with_snr() -> None:
    clean, coordinates = field_of_blobs()
    rng = np.random.default_rng(3)
    weak = separability(clean + rng.normal(0, 2.0, clean.shape), coordinates, DIAMETER, rng)
    strong = separability(clean + rng.normal(0, 0.2, clean.shape), coordinates, DIAMETER, rng)
    assert strong.auc > weak.auc and strong.cnr > weak.cnr and strong.d_prime > weak.d_prime
    assert strong.auc > 0.99


def test_picker_finds_clean_blobs_and_scores_are_right() -> None:
    clean, coordinates = field_of_blobs()
    picks, scores = pick_particles(clean, DIAMETER, max_picks=len(coordinates))
    assert np.all(np.diff(scores) <= 0)
    hits = match_picks(picks, coordinates, 0.5 * DIAMETER)
    assert hits.all() and len(picks) == len(coordinates)
    _, score = pick_and_score(clean, coordinates, DIAMETER)
    assert score.average_precision == pytest.approx(1.0) and score.f1 == pytest.approx(1.0)


def test_picking_score_by_hand() -> None:
    hits = np.array([True, False, True, False])
    score = picking_score(hits, total_true=4)
    assert score.average_precision == pytest.approx((1 / 1 + 2 / 3) / 4)
    assert score.f1 == pytest.approx(max(2 * 1 * 0.25 / 1.25, 2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)))
    assert picking_score(np.array([], dtype=bool), 3).average_precision == 0.0


def test_fast_fft_length_is_the_next_7_smooth_length():
    def smooth(n: int) -> bool:
        for prime in (2, 3, 5, 7):
            while n % prime == 0:
                n //= prime
        return n == 1

    for n in (1, 11, 13, 97, 1051, 4099):
        length = fast_fft_length(n)
        assert length >= n and smooth(length)
        assert not any(smooth(m) for m in range(n, length))


def test_difference_of_gaussians_is_the_difference_of_two_blurs():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(97, 131)) + np.linspace(0, 5, 131)[None, :]
    band = difference_of_gaussians(image, 2.0, 3.2)
    expected = gaussian_blur(image, 2.0) - gaussian_blur(image, 3.2)
    assert band.shape == image.shape
    # to the rounding of float32 FFTs (FFT_DTYPE): 1e-6 of the variation (5)
    assert np.allclose(band[12:-12, 12:-12], expected[12:-12, 12:-12], atol=5e-6)
    assert np.allclose(gaussian_blur(np.full((37, 53), 4.0), 5.0), 4.0)


def test_inverted_image_picks_are_the_negated_response_picks():
    rng = np.random.default_rng(4)
    image = rng.normal(size=(128, 128))
    direct = pick_particles(-image, DIAMETER)
    shared = pick_peaks(-blob_response(image, DIAMETER), DIAMETER)
    assert len(direct[0]) > 0
    assert np.array_equal(direct[0], shared[0]) and np.array_equal(direct[1], shared[1])


def test_disk_masks_are_the_points_within_the_radius_and_shared_read_only() -> None:
    rng = np.random.default_rng(3)
    points = np.vstack([rng.uniform(-5, 75, (40, 2)), [[0, 0], [69, 49]]])  # edges, outside
    mask = disk_masks((50, 70), points, 6.5)
    yy, xx = np.mgrid[:50, :70]
    centres = np.round(points)
    nearest = ((xx[..., None] - centres[:, 0]) ** 2 + (yy[..., None] - centres[:, 1]) ** 2).min(-1)
    assert np.array_equal(mask, nearest <= 6.5**2)
    assert disk_masks((50, 70), points.copy(), 6.5) is mask  # remembered, not recomputed
    with pytest.raises(ValueError):
        mask[0, 0] = True
