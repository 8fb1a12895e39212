"""The per-micrograph noise estimate on scaled and correlated (non-count) data with known σ,
and the noise variants the wide prior trains on."""

from __future__ import annotations

import numpy as np
import pytest

from streamdenoise.physics.noise import add_read_noise, correlate, interpolation_transfers, rescale
from streamdenoise.stats.noise import estimate_noise_sigma, estimate_noise_spectrum, mad_std


def _background(h: int = 512, w: int = 384) -> np.ndarray:
    """A smooth field: an ice gradient, slow waves and dark blobs of 5–15 px."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:h, 0:w] / 100.0
    smooth = 0.3 * yy + 0.2 * np.sin(xx * 2.0) * np.cos(yy * 1.5)
    for _ in range(30):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 15)
        smooth -= 0.3 * np.exp(-((yy * 100 - cy) ** 2 + (xx * 100 - cx) ** 2) / (2 * r**2))
    return smooth * 100.0


@pytest.mark.parametrize("gain", [0.01, 1.0, 37.0])
def test_scaled_counts(gain: float) -> None:
    rng = np.random.default_rng(2)
    expected = 20.0 + _background() / 10
    counts = rng.poisson(np.clip(expected, 1, None)).astype(np.float64)
    noisy, clean = rescale(counts, expected, gain, offset=-123.0)
    true_sigma = float(np.std(noisy - clean))
    assert estimate_noise_sigma(noisy) == pytest.approx(true_sigma, rel=0.05)


@pytest.mark.parametrize("frames", [4, 12, 40])  # movies have many frames
def test_correlated_noise_of_motion_correction(frames: int) -> None:
    rng = np.random.default_rng(frames)
    clean = _background()
    noisy, clean = correlate(clean + rng.normal(0, 8.0, clean.shape), clean, frames, rng)
    true_sigma = float(np.std(noisy - clean))
    estimate = estimate_noise_spectrum(noisy)
    assert estimate.pixel_sigma == pytest.approx(true_sigma, rel=0.05)
    assert estimate.interpolation > 0.05  # it saw the correlation


def test_white_noise_is_white() -> None:
    rng = np.random.default_rng(3)
    estimate = estimate_noise_spectrum(_background() + rng.normal(0, 3.0, (512, 384)))
    assert estimate.interpolation <= 0.01
    assert estimate.pixel_sigma == pytest.approx(3.0, rel=0.03)
    assert np.allclose(estimate.band_shape((512, 384), 8), 1.0, atol=0.05)


def test_read_noise_adds_variance() -> None:
    rng = np.random.default_rng(4)
    clean = np.full((256, 256), 100.0)
    counts = rng.poisson(clean).astype(np.float64)
    noisy, same = add_read_noise(counts, clean, 2.0, rng)
    assert same is clean
    assert np.var(noisy - clean) == pytest.approx(100.0 * (1 + 2.0**2), rel=0.05)


def test_interpolation_transfers() -> None:
    signal, noise = interpolation_transfers((64, 64), np.array([[0.0, 0.0], [0.5, 0.5]]))
    assert signal[0, 0] == pytest.approx(1.0) and noise[0, 0] == pytest.approx(1.0)
    # At Nyquist along x, a half-pixel shift nulls its frame: the mean of 1 and 0.
    assert signal[0, 32] == pytest.approx(0.5) and noise[0, 32] == pytest.approx(np.sqrt(0.5))
    with pytest.raises(ValueError):
        correlate(np.zeros((8, 8)), np.zeros((8, 8)), 0, np.random.default_rng(0))


def test_mad_std_is_the_std_of_gaussian_data_and_ignores_outliers() -> None:
    values = np.random.default_rng(4).normal(10.0, 2.0, 200_000)
    assert mad_std(values) == pytest.approx(2.0, rel=0.01)
    values[:1000] = 1e6  # 0.5 % wild values barely move it; the plain std explodes
    assert mad_std(values) == pytest.approx(2.0, rel=0.02)
    assert np.std(values) > 1000
    assert mad_std(values, centre=10.0) == pytest.approx(mad_std(values), rel=0.01)
    assert mad_std(values, centre=12.0) > 1.5 * mad_std(values)  # deviations from 12
