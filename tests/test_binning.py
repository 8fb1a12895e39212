"""Fourier-crop binning keeps the mean and low frequencies and scales the pixel size."""

from __future__ import annotations

import numpy as np
import pytest

from streamdenoise.physics.binning import (
    bin_image,
    bin_to_pixel_size,
    binned_to_input,
    fourier_crop,
)


@pytest.mark.parametrize("shape", [(256, 256), (255, 301), (4092 // 8, 5760 // 8)])
@pytest.mark.parametrize("factor", [2, 4, 2.5])
def test_binning_keeps_the_mean_and_scales_the_pixel_size(shape, factor) -> None:
    rng = np.random.default_rng(0)
    image = rng.poisson(40.0, size=shape).astype(np.float32)
    binned, pixel = bin_image(image, 0.83, factor)
    assert binned.shape == (int(shape[0] / factor), int(shape[1] / factor))
    assert binned.dtype == np.float32
    assert binned.mean() == pytest.approx(image.mean(), rel=1e-5)
    assert pixel == pytest.approx(0.83 * shape[1] / binned.shape[1])
    assert pixel == pytest.approx(0.83 * factor, rel=0.01)


def test_low_frequencies_survive_and_white_noise_variance_drops() -> None:
    n = 512
    y, x = np.mgrid[0:n, 0:n]
    wave = np.cos(2 * np.pi * 5 * x / n) + 0.5 * np.sin(2 * np.pi * 3 * y / n)
    binned, _ = bin_image(wave, 1.0, 4)
    yb, xb = np.mgrid[0 : n // 4, 0 : n // 4]
    expected = np.cos(2 * np.pi * 5 * xb / (n // 4)) + 0.5 * np.sin(2 * np.pi * 3 * yb / (n // 4))
    assert np.allclose(binned, expected, atol=1e-5)
    noise = np.random.default_rng(1).standard_normal((n, n))
    assert fourier_crop(noise, (n // 4, n // 4)).var() == pytest.approx(1 / 16, rel=0.05)


def test_bin_to_pixel_size_refuses_upsampling() -> None:
    image = np.zeros((64, 64), np.float32)
    binned, pixel = bin_to_pixel_size(image, 1.0, 4.0)
    assert binned.shape == (16, 16) and pixel == pytest.approx(4.0)
    with pytest.raises(ValueError, match="finer"):
        bin_to_pixel_size(image, 2.0, 1.0)
    same, pixel = bin_to_pixel_size(image, 2.0, 2.0)
    assert same.shape == (64, 64) and pixel == 2.0


@pytest.mark.parametrize(("shape", "factor"), [((300, 250), 2), ((301, 257), 3), ((256, 256), 2.5)])
def test_binned_positions_map_back_to_the_input_exactly(shape, factor) -> None:
    """A smooth blob's centroid after Fourier cropping, mapped back, is where it was (to
    1/50 px): the grids share sample 0 (no (b − 1)/2 offset as with block averaging)."""
    x0, y0, sigma = 101.3, 137.8, 7.0
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    blob = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
    binned, _ = bin_image(blob, 1.0, factor)
    yb, xb = np.mgrid[0 : binned.shape[0], 0 : binned.shape[1]]
    weights = np.clip(binned, 0, None)
    centroid = np.array([[(xb * weights).sum(), (yb * weights).sum()]]) / weights.sum()
    back = binned_to_input(centroid, binned.shape, shape)
    assert np.abs(back - [[x0, y0]]).max() < 0.02
    assert binned_to_input(np.zeros((0, 2)), binned.shape, shape).shape == (0, 2)


def test_cropping_to_one_row_keeps_the_mean() -> None:
    # The Nyquist column of a one-row spectrum was written from a view of itself (torch
    # refused it with a RuntimeError that escaped the daemon's error handling).
    image = np.full((2, 37), 3.0, np.float32)
    assert fourier_crop(image, (1, 18)) == pytest.approx(np.full((1, 18), 3.0))
