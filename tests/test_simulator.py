"""The simulator: particles where the truth says, Poisson noise at the dose, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from streamdenoise.physics.density import load_reference
from streamdenoise.physics.simulator import (
    MicrographParams,
    particle_snr,
    place_particles,
    simulate_micrograph,
)


@pytest.fixture(scope="module")
def reference():
    return load_reference()


def small_params(**overrides) -> MicrographParams:
    values = dict(shape=(256, 256), pixel_size=4.0, detector_pixel_size=1.0, seed=3, particles=12)
    values.update(overrides)
    return MicrographParams(**values)


@pytest.fixture(scope="module")
def simulated(reference):
    return simulate_micrograph(reference, small_params(), keep_particle_signal=True)


def local_energy(image: np.ndarray, points: np.ndarray, radius: int) -> np.ndarray:
    """Mean squared value of `image` in a (2r+1)² box around each (x, y) point."""
    values = []
    for x, y in np.round(points).astype(int):
        box = image[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
        values.append(float((box**2).mean()))
    return np.asarray(values)


def test_particle_signal_at_every_true_coordinate_and_not_in_background(
    simulated, reference
) -> None:
    coordinates = simulated.coordinates
    assert len(coordinates) == 12
    radius = int(0.3 * reference.diameter / 4.0)
    at_particles = local_energy(simulated.particle_signal, coordinates, radius)
    # Background positions at least one diameter from every particle.
    rng = np.random.default_rng(0)
    candidates = rng.uniform(radius, 256 - radius, size=(2000, 2))
    distance = np.linalg.norm(candidates[:, None] - coordinates[None], axis=2).min(axis=1)
    background = candidates[distance > reference.diameter / 4.0][:50]
    assert len(background) >= 10
    at_background = local_energy(simulated.particle_signal, background, radius)
    assert at_particles.min() > 10 * np.median(at_background)
    # The same holds in the clean image once its smooth background is removed.
    clean = simulated.clean - simulated.clean.mean()
    residual = clean - (simulated.clean - simulated.particle_signal - simulated.clean.mean())
    assert np.allclose(residual, simulated.particle_signal, atol=1e-2)


def test_noise_variance_follows_the_dose(reference) -> None:
    for dose in (15.0, 60.0):
        result = simulate_micrograph(reference, small_params(dose=dose, particles=0))
        noise = result.noisy.astype(np.float64) - result.clean
        mean_counts = float(result.clean.mean())
        assert mean_counts == pytest.approx(dose * 16 * np.exp(-350 / 3500), rel=0.05)
        assert noise.mean() == pytest.approx(0.0, abs=0.05 * float(np.sqrt(mean_counts)))
        assert noise.var() == pytest.approx(mean_counts, rel=0.03)  # Poisson: var = mean
        assert np.all(result.noisy == np.round(result.noisy))  # counts are integers


def test_same_seed_same_micrograph_other_seed_other(reference) -> None:
    a = simulate_micrograph(reference, small_params(seed=7, carbon_edge=-0.2))
    b = simulate_micrograph(reference, small_params(seed=7, carbon_edge=-0.2))
    c = simulate_micrograph(reference, small_params(seed=8, carbon_edge=-0.2))
    assert np.array_equal(a.noisy, b.noisy) and np.array_equal(a.clean, b.clean)
    assert np.array_equal(a.coordinates, b.coordinates)
    assert not np.array_equal(a.noisy, c.noisy)


def test_carbon_is_dark_and_free_of_particles(reference) -> None:
    result = simulate_micrograph(
        reference, small_params(carbon_edge=0.0, particles=30, shape=(384, 384))
    )
    carbon = result.carbon_mask
    assert 0.2 < carbon.mean() < 0.8
    assert result.clean[carbon].mean() < 0.97 * result.clean[~carbon].mean()
    x, y = np.round(result.coordinates).astype(int).T
    assert not carbon[y, x].any()


def test_particle_snr_is_in_the_low_dose_regime(simulated) -> None:
    snr = particle_snr(simulated)
    # At 4 Å/px (16 detector pixels summed) and 40 e⁻/Å²: a few percent to about 0.3.
    assert 0.01 < np.median(snr) < 0.3


def test_place_particles_keeps_spacing_and_mask() -> None:
    rng = np.random.default_rng(1)
    allowed = np.ones((200, 300), dtype=bool)
    allowed[:, :100] = False
    points = place_particles(60, (200, 300), 20.0, allowed, rng)
    assert len(points) > 30
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)
    assert distances[np.triu_indices(len(points), 1)].min() >= 20.0
    assert points[:, 0].min() >= 100
    clumped = place_particles(60, (200, 300), 20.0, allowed, rng, aggregate_fraction=0.5)
    distances = np.linalg.norm(clumped[:, None] - clumped[None], axis=2)
    assert distances[np.triu_indices(len(clumped), 1)].min() < 20.0
