"""CTF against theory: wavelength, interaction constant, zeros, astigmatism."""

from __future__ import annotations

import numpy as np
import pytest

from streamdenoise.physics.ctf import (
    ctf_2d,
    ctf_zero_frequencies,
    electron_wavelength,
    estimate_defocus,
    interaction_constant,
)


def test_wavelength_and_interaction_constant_at_300kv() -> None:
    assert electron_wavelength(300) == pytest.approx(0.019687, rel=1e-4)
    assert electron_wavelength(200) == pytest.approx(0.025079, rel=1e-4)
    assert interaction_constant(300) == pytest.approx(6.526e-4, rel=2e-3)


@pytest.mark.parametrize("amplitude_contrast", [0.0, 0.07])
def test_ctf_zeros_where_theory_puts_them(amplitude_contrast: float) -> None:
    pixel, defocus, n = 1.0, 15000.0, 2048
    ctf = ctf_2d((n, n), pixel, defocus_u=defocus, cs_mm=0.0, amplitude_contrast=amplitude_contrast)
    profile = ctf[0, 1:]  # along kx, ky = 0, without k = 0 (a zero itself when A = 0)
    k = np.fft.rfftfreq(n, d=pixel)[1:]
    sign_changes = k[np.nonzero(np.diff(np.sign(profile)))[0]]
    expected = ctf_zero_frequencies(defocus, amplitude_contrast=amplitude_contrast, count=3)
    step = 1 / (n * pixel)
    assert np.allclose(sign_changes[:3], expected, atol=step)


def test_low_frequency_sign_makes_protein_dark() -> None:
    ctf = ctf_2d((64, 64), 4.0, defocus_u=15000.0)
    assert ctf[0, 0] == pytest.approx(-0.07)
    assert ctf[0, 1] < 0


def test_astigmatism_rotates_with_the_angle() -> None:
    kwargs = dict(defocus_u=20000.0, defocus_v=10000.0, cs_mm=0.0)
    along_x = ctf_2d((256, 256), 2.0, astigmatism_angle=0.0, rfft=False, **kwargs)
    along_y = ctf_2d((256, 256), 2.0, astigmatism_angle=90.0, rfft=False, **kwargs)
    assert np.allclose(along_x, along_y.T, atol=1e-9)
    assert not np.allclose(along_x, along_y, atol=1e-3)


def test_b_factor_envelope_and_argument_checks() -> None:
    plain = ctf_2d((128, 128), 2.0, defocus_u=10000.0)
    damped = ctf_2d((128, 128), 2.0, defocus_u=10000.0, b_factor=200.0)
    k2 = np.fft.fftfreq(128, 2.0)[:, None] ** 2 + np.fft.rfftfreq(128, 2.0)[None] ** 2
    assert np.allclose(damped, plain * np.exp(-200.0 * k2 / 4))
    with pytest.raises(ValueError, match="pixel size"):
        ctf_2d((8, 8), 0.0, defocus_u=1.0)
    with pytest.raises(ValueError, match="amplitude contrast"):
        ctf_2d((8, 8), 1.0, defocus_u=1.0, amplitude_contrast=1.5)


@pytest.mark.parametrize(
    ("pixel_size", "defocus"), [(1.5, 15000.0), (1.5, 22000.0), (4.0, 20000.0)]
)
def test_defocus_is_found_from_the_thon_rings(pixel_size: float, defocus: float) -> None:
    """A simulated micrograph (particles, ice, Poisson counts) at 1.5 Å/px, and one at
    4 Å/px (four or five rings below Nyquist): the defocus within 2 %; white noise has no
    rings and a poor fit."""
    from streamdenoise.physics.density import load_reference
    from streamdenoise.physics.simulator import MicrographParams, simulate_micrograph

    params = MicrographParams(
        shape=(1024, 1024),
        pixel_size=pixel_size,
        detector_pixel_size=pixel_size,
        seed=1,
        dose=40.0,
        defocus_u=defocus,
        defocus_v=defocus,
        particles=150,
    )
    micrograph = simulate_micrograph(load_reference(), params).noisy
    found, fit = estimate_defocus(micrograph, pixel_size)
    assert found == pytest.approx(defocus, rel=0.02) and fit > 0.3
    noise = np.random.default_rng(0).normal(size=(1024, 1024))
    assert estimate_defocus(noise, pixel_size)[1] < 0.2
    with pytest.raises(ValueError, match="64"):
        estimate_defocus(noise[:32], pixel_size)


def test_defocus_fit_takes_any_pixel_size_and_shape() -> None:
    """Binned real micrographs have pixel sizes like 4.0044 Å (fei-extended.mrc of the
    mrcfile sdist, 0.854 Å binned to 4 Å): the fit's cached ring geometry and its band must
    agree for every one (a rounding difference once dropped a ring from one of them)."""
    noise = np.random.default_rng(1).normal(size=(200, 190))
    for pixel_size in [4.004433766930505, *np.linspace(3.9, 4.1, 41), 1.3, 2.77]:
        defocus, fit = estimate_defocus(noise, float(pixel_size))
        assert 3000.0 <= defocus <= 40000.0 and -1.0 <= fit <= 1.0


def test_a_projection_through_the_ctf_is_dark_with_zero_mean() -> None:
    from streamdenoise.physics.ctf import image_through_ctf

    yy, xx = np.mgrid[0:64, 0:64] - 32
    blob = np.exp(-(xx**2 + yy**2) / (2 * 4.0**2))  # protein: potential ≥ 0
    image = image_through_ctf(blob, 4.0, 15000.0)
    assert image.shape == (64, 64) and abs(image.mean()) < 1e-12
    assert image[32, 32] < 0 and image[32, 32] == image.min()  # dark where the protein is
