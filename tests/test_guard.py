"""The do-no-harm guard: sound denoisers pass, over-removal and invention fail, and the
shipped model through live mode never adds picks to noise or loses a structure it never saw."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamdenoise.model.inference import Denoised, live_denoise_many, normalize
from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.stats.filters import gaussian_blur, gaussian_transfer
from streamdenoise.stats.guard import band_ratios, check_residual, residual_structure_correlation
from streamdenoise.stats.picker import pick_particles

SIZE = 384


def _blobs(rng: np.random.Generator, count: int, radius: float) -> np.ndarray:
    """A smooth clean image (SIZE, SIZE) of dark Gaussian blobs, std about 1."""
    clean = np.zeros((SIZE, SIZE))
    ys, xs = rng.uniform(20, SIZE - 20, (2, count))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for y, x in zip(ys, xs, strict=True):
        clean -= np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * radius**2))
    return clean / clean.std()


def _wiener(noisy: np.ndarray, clean: np.ndarray, sigma: float) -> np.ndarray:
    """The oracle linear MMSE filter from the clean image's spectrum (a sound denoiser)."""
    signal = np.abs(np.fft.rfft2(clean - clean.mean())) ** 2 / clean.size
    gain = signal / (signal + sigma**2)
    return np.fft.irfft2(np.fft.rfft2(noisy) * gain, s=noisy.shape)


@pytest.fixture(scope="module")
def field() -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(0)
    clean = _blobs(rng, 300, 2.0)  # signal in the judged bands (above 1/16 cycles/px)
    sigma = 1.0
    return clean, clean + rng.normal(0, sigma, clean.shape), sigma


def test_sound_denoisers_pass(field) -> None:
    clean, noisy, sigma = field
    assert check_residual(noisy, noisy, sigma).passed  # identity: nothing removed
    wiener = check_residual(noisy, _wiener(noisy, clean, sigma), sigma)
    assert wiener.passed, wiener
    assert wiener.residual_power < 1.05 and wiener.invented_power < 0.02


def test_removing_signal_fails(field) -> None:
    _, noisy, sigma = field
    flat = np.full_like(noisy, noisy.mean())  # removes the signal along with the noise
    report = check_residual(noisy, flat, sigma)
    assert not report.passed and report.residual_power > 1.1


def test_inventing_structure_fails(field) -> None:
    clean, noisy, sigma = field
    invented = _blobs(np.random.default_rng(99), 300, 2.0)  # particles where there are none
    report = check_residual(noisy, _wiener(noisy, clean, sigma) + invented, sigma)
    assert not report.passed and report.invented_power > 0.1
    assert "guard fallback" in report.summary()


def test_a_tiny_residual_passes_however_it_is_oriented(field) -> None:
    _, noisy, sigma = field
    nudge = 1e-4 * np.random.default_rng(5).normal(size=noisy.shape)
    assert check_residual(noisy, noisy + nudge, sigma).passed


def test_band_ratios_of_pure_noise_removed_entirely_are_one() -> None:
    noise = np.random.default_rng(3).normal(0, 0.5, (SIZE, SIZE))
    ratios = band_ratios(noise, np.zeros_like(noise), 0.5)
    assert np.allclose(ratios.residual_power[1:], 1.0, atol=0.08)
    assert np.all(ratios.invented_power < 0.05)


def test_guard_validates_its_inputs(field) -> None:
    _, noisy, _ = field
    with pytest.raises(ValueError, match="sigma"):
        check_residual(noisy, noisy, 0.0)
    with pytest.raises(ValueError, match="shape"):
        check_residual(noisy, noisy[1:], 1.0)


def test_residual_structure_correlation_of_a_low_pass(field) -> None:
    _, noisy, _ = field
    # A Gaussian blur splits white noise into nearly disjoint bands: weak correlation.
    assert abs(residual_structure_correlation(noisy, gaussian_blur(noisy, 1.5), 30)) < 0.35
    # Returning the input: no residual, correlation 0 by definition.
    assert residual_structure_correlation(noisy, noisy, 30) == 0.0


# -- the shipped model through live mode ---------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return load_model(default_model_path()).model


def _hollow_shells(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Projected hollow spheres (outer 60 Å, inner 40 Å at 4 Å/px: 15 and 10 px) on a
    flat background, particles dark: a shape none of the training structures has.
    Returns (clean (SIZE, SIZE), centres (N, 2) as (x, y))."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    clean = np.zeros((SIZE, SIZE))
    centres = []
    while len(centres) < count:
        x, y = rng.uniform(24, SIZE - 24, 2)
        if all(math.hypot(x - a, y - b) > 34 for a, b in centres):
            centres.append((x, y))
            r2 = (xx - x) ** 2 + (yy - y) ** 2
            outer, inner = (np.sqrt(np.clip(r**2 - r2, 0, None)) for r in (15.0, 10.0))
            chord = outer - inner
            clean -= chord
    return clean, np.array(centres)


def _radial_profile(image: np.ndarray, centres: np.ndarray, radius: int = 22) -> np.ndarray:
    """Mean of `image` in 1-px rings around the centres, 0 … radius px."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    ring = np.round(np.hypot(yy, xx)).astype(int)
    total = np.zeros(radius + 1)
    for x, y in np.round(centres).astype(int):
        patch = image[y - radius : y + radius + 1, x - radius : x + radius + 1]
        total += np.bincount(ring.ravel(), patch.ravel(), minlength=radius + 2)[: radius + 1]
    return total / np.bincount(ring.ravel())[: radius + 1] / len(centres)


def test_an_unseen_hollow_shell_keeps_its_shape(shipped) -> None:
    rng = np.random.default_rng(11)
    clean, centres = _hollow_shells(rng, 40)
    noisy = rng.poisson(np.clip(30.0 + 0.8 * clean, 1, None)).astype(np.float32)
    result = live_denoise_many([noisy], shipped, tile=SIZE)[0]
    assert isinstance(result, Denoised) and result.guard is not None
    truth = _radial_profile(clean, centres)
    profile = _radial_profile(result.image, centres)
    # The shell (darkest ring) and the lighter cavity inside it survive.
    assert np.corrcoef(truth, profile)[0, 1] > 0.9
    assert profile[:5].mean() > profile[10:14].mean()


@pytest.mark.parametrize("kind", ["gaussian", "counts", "scaled correlated"])
def test_pure_noise_gets_no_more_picks(shipped, kind: str) -> None:
    rng = np.random.default_rng(7)
    if kind == "gaussian":
        noise = rng.normal(100.0, 10.0, (SIZE, SIZE))
    elif kind == "counts":
        noise = rng.poisson(20.0, (SIZE, SIZE)).astype(np.float64)
    else:  # gain-scaled counts, low-passed as motion-correction interpolation leaves them
        counts = rng.poisson(20.0, (SIZE, SIZE)) * 37.0
        spectrum = np.fft.rfft2(counts) * gaussian_transfer(counts.shape, 0.6)
        noise = np.fft.irfft2(spectrum, s=counts.shape)
    noise = noise.astype(np.float32)
    result = live_denoise_many([noise], shipped, tile=SIZE)[0]
    diameter = 30.0  # px: 120 Å at 4 Å/px
    threshold = 3.0
    before = len(pick_particles(normalize(noise)[0], diameter, threshold=threshold)[0])
    after = len(pick_particles(normalize(result.image)[0], diameter, threshold=threshold)[0])
    assert after <= before, (kind, before, after, result.guard)
