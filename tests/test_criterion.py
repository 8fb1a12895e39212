"""The truth-free picking criterion and the blind-spot loss: checked against the truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamdenoise.model.losses import blind_spot_loss
from streamdenoise.stats.criterion import _detector, response_correlation
from streamdenoise.stats.filters import gaussian_blur
from streamdenoise.stats.noise import NoiseSpectrum, estimate_noise_spectrum

DIAMETER = 24.0  # px


@pytest.fixture(scope="module")
def field() -> tuple[np.ndarray, np.ndarray, NoiseSpectrum]:
    """Dark disks (D = 24 px) in correlated Gaussian noise: (clean, noisy, spectrum)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:400, 0:400]
    clean = np.zeros((400, 400))
    for cx, cy in rng.uniform(20, 380, (60, 2)):
        clean -= 0.3 * ((xx - cx) ** 2 + (yy - cy) ** 2 < 12**2)
    spectrum = NoiseSpectrum(1.0, 0.1)
    return clean, clean + spectrum.sample(clean.shape, rng), spectrum


def true_correlation(output: np.ndarray, clean: np.ndarray) -> float:
    a, b = _detector(output, DIAMETER), _detector(clean, DIAMETER)
    return float(np.sum(a * b) / math.sqrt(np.sum(a * a) * np.sum(b * b)))


@pytest.mark.parametrize(
    "denoise",
    [
        lambda y: y,
        lambda y: gaussian_blur(y, 2.0),
        lambda y: np.clip(gaussian_blur(y, 3.0), -0.2, 0.2),  # nonlinear
        lambda y: np.sign(y) * np.maximum(np.abs(y) - 0.5, 0.0),  # soft threshold
    ],
    ids=["identity", "blur", "clipped blur", "soft threshold"],
)
def test_estimate_matches_the_correlation_with_the_clean_response(field, denoise) -> None:
    clean, noisy, spectrum = field
    estimate = response_correlation(denoise, noisy, spectrum, DIAMETER, samples=4)
    assert estimate == pytest.approx(true_correlation(denoise(noisy), clean), abs=0.015)


def test_a_denoiser_that_wipes_particles_scores_below_the_input(field) -> None:
    _, noisy, spectrum = field
    identity = response_correlation(np.asarray, noisy, spectrum, DIAMETER)
    wiped = response_correlation(lambda y: gaussian_blur(y, 40.0), noisy, spectrum, DIAMETER)
    assert wiped < identity - 0.2


def test_pure_noise_has_nothing_to_detect() -> None:
    spectrum = NoiseSpectrum(1.0, 0.0)
    noise = spectrum.sample((256, 256), np.random.default_rng(3))
    value = response_correlation(np.asarray, noise, spectrum, DIAMETER)
    assert math.isnan(value) or abs(value) < 0.3


def test_noise_samples_follow_the_spectrum() -> None:
    spectrum = NoiseSpectrum(4.0, 0.12)
    sample = spectrum.sample((512, 512), np.random.default_rng(0))
    assert float(np.std(sample)) == pytest.approx(spectrum.pixel_sigma, rel=0.02)
    fitted = estimate_noise_spectrum(sample)
    assert fitted.interpolation == pytest.approx(0.12, abs=0.02)


def test_blind_spot_loss_of_a_zero_score_model_is_the_interpolation_error() -> None:
    """Tweedie with a zero score returns its (masked) input: the loss is the error of the
    four-neighbour mean at the hidden pixels; it cannot see the pixel it predicts."""
    y = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))

    def zero_score(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    padded = torch.nn.functional.pad(y, (1, 1, 1, 1), mode="reflect")
    mean4 = 0.25 * (
        padded[..., :-2, 1:-1]
        + padded[..., 2:, 1:-1]
        + padded[..., 1:-1, :-2]
        + padded[..., 1:-1, 2:]
    )
    expected = (mean4 - y)[..., 1::4, 2::4].square().mean()
    assert float(blind_spot_loss(zero_score, y, 0.2, (1, 2))) == pytest.approx(float(expected))

    def copy_input(x: torch.Tensor) -> torch.Tensor:  # score that undoes nothing it cannot see
        return (y - x) / 0.2**2

    assert float(blind_spot_loss(copy_input, y, 0.2, (1, 2))) == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="shape"):
        blind_spot_loss(zero_score, y[:, 0], 0.2, (0, 0))
