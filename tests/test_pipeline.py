"""The shared micrograph pipeline: binning, noise level, tile fitting, cross-micrograph
batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamdenoise.model.inference import live_denoise
from streamdenoise.model.pipeline import (
    NULL_TILES,
    DenoiseSettings,
    denoise_image,
    denoise_prepared,
    fit_tile,
    noise_level,
    prepare,
)
from streamdenoise.model.unet import ScoreUNet, UNetConfig
from streamdenoise.stats.filters import flatten_background
from streamdenoise.stats.noise import estimate_noise_spectrum


@pytest.fixture(scope="module")
def model() -> ScoreUNet:
    torch.manual_seed(0)
    net = ScoreUNet(UNetConfig(base_channels=8, channel_multipliers=(1, 2), norm_groups=0))
    torch.nn.init.normal_(net.head.weight, std=0.05)  # a non-trivial score
    return net.eval()


def test_fit_tile_covers_with_fewer_pixels() -> None:
    assert fit_tile(256, 256, 512, 32, 4) == 256
    tile = fit_tile(1024, 1024, 512, 32, 4)
    assert tile % 4 == 0 and tile <= 512
    count = -(-(1024 - 32) // (tile - 32))
    assert count * tile - (count - 1) * 32 >= 1024
    assert count**2 * tile**2 < 9 * 512**2


def test_poisson_noise_level_for_counts_and_fallback() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(40.0, size=(512, 512)).astype(np.float32)
    expected = np.sqrt(counts.mean()) / (5 * counts.std())
    assert noise_level(counts, float(counts.mean()), 1.0)[0] == pytest.approx(expected, rel=1e-6)
    scaled = counts * 37.0  # not counts any more: the spectral estimate is used
    from_spectrum, _, _ = noise_level(scaled, float(scaled.mean()), 1.0)
    assert from_spectrum == pytest.approx(0.2, rel=0.05)


@pytest.mark.parametrize("scale", [1.0, 37.0])
def test_the_noise_spectrum_in_image_units_is_the_images_own(scale: float) -> None:
    """What `prepare` fitted on the normalised micrograph, scaled back, is the fit of the
    binned micrograph itself (the picking statistics reuse it instead of fitting again)."""
    rng = np.random.default_rng(2)
    image = scale * rng.poisson(30.0, size=(1024, 1024)).astype(np.float32)
    image[100:140, 200:260] *= 0.9  # some structure, so that the two fits are not trivial
    prepared = prepare(image, 1.0, 4.0, DenoiseSettings())
    own = estimate_noise_spectrum(prepared.image)
    assert prepared.image_noise.white_variance == pytest.approx(own.white_variance, rel=1e-3)
    assert prepared.image_noise.interpolation == pytest.approx(own.interpolation, abs=1e-6)


def test_binning_to_the_model_pixel_size_keeps_the_pixel_size(model) -> None:
    image = np.random.default_rng(1).poisson(10.0, (400, 300)).astype(np.float32)
    denoised, pixel = denoise_image(image, 1.0, model, 4.0, DenoiseSettings())
    assert denoised.image.shape == (100, 75) and pixel == pytest.approx(4.0)
    denoised, pixel = denoise_image(image, 1.0, model, 4.0, DenoiseSettings(bin_factor=2))
    assert denoised.image.shape == (200, 150) and pixel == pytest.approx(2.0)
    coarse, pixel = denoise_image(image, 5.0, model, 4.0, DenoiseSettings())
    assert coarse.image.shape == image.shape and pixel == 5.0  # never upsampled


def test_batching_across_micrographs_changes_nothing(model) -> None:
    rng = np.random.default_rng(2)
    images = [rng.poisson(20.0, (160, 160)).astype(np.float32) for _ in range(3)]
    settings = DenoiseSettings(tile=64, overlap=16, batch_size=5)
    prepared = [prepare(image, 4.0, 4.0, settings) for image in images]
    together = denoise_prepared(prepared, model, settings)
    for p, batched in zip(prepared, together, strict=True):
        alone = live_denoise(p.image, model, tile=64, overlap=16, batch_size=5, sigma=p.sigma)
        assert np.allclose(batched.image, alone, atol=1e-5)
        assert not np.allclose(batched.image, p.image)  # the model did something


def test_flatten_background_removes_a_gradient_and_keeps_particles() -> None:
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float64)
    blob = -5.0 * np.exp(-((yy - 256) ** 2 + (xx - 256) ** 2) / (2 * 4.0**2))
    image = 100.0 + 0.2 * xx + blob
    flat = flatten_background(image, sigma=40.0)
    assert flat.dtype == np.float32 and flat.mean() == pytest.approx(image.mean(), rel=1e-5)
    assert np.ptp(flat[:, :20]) < 0.1 * np.ptp(image[:, :20])  # also at the edges
    away = (slice(200, 300), slice(140, 200))  # background beside the blob, 3σ from the edges
    assert np.ptp(flat[away]) < 0.1 * np.ptp(image[away])  # the gradient is gone
    assert flat[256, 256] - flat[256, 220] == pytest.approx(-5.0, abs=0.5)
    with pytest.raises(ValueError):
        flatten_background(image, 0.0)


def test_background_scale_is_applied_after_denoising() -> None:
    identity = ScoreUNet(UNetConfig(base_channels=4, channel_multipliers=(1, 2), norm_groups=0))
    image = np.random.default_rng(3).poisson(30.0, (128, 128)).astype(np.float32)
    settings = DenoiseSettings(tile=64, overlap=16, background_scale=120.0)
    prepared = prepare(image, 4.0, 4.0, settings)
    result = denoise_prepared([prepared], identity.eval(), settings)[0]
    expected = flatten_background(prepared.image, 120.0 / 4.0)
    np.testing.assert_allclose(result.image, expected, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="background"):
        DenoiseSettings(background_scale=-1.0)


@pytest.mark.parametrize(
    "image, words",
    [
        (np.ones((64, 64), np.float32), "constant"),
        (np.random.default_rng(4).poisson(20.0, (16, 64)).astype(np.float32), "too small"),
    ],
)
def test_an_unusable_micrograph_is_a_named_error(tmp_path, image, words: str) -> None:
    import mrcfile

    from streamdenoise.errors import MicrographError
    from streamdenoise.processing import read_prepared

    path = tmp_path / "m.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(image)
        mrc.voxel_size = 4.0
    with pytest.raises(MicrographError, match=words) as caught:
        read_prepared(path, 4.0, DenoiseSettings())
    assert str(path) in str(caught.value)


def test_the_null_is_the_micrographs_noise_through_the_same_denoiser(model) -> None:
    """`Denoised.null`: `NULL_TILES` tiles of noise of the micrograph's fitted spectrum,
    normalised like the micrograph; through an identity network it is that noise in the
    image's units (std σ̂ × the normalised unit); a real network changes it; where the
    guard keeps the input the null is the input noise too; the same draw every time for the same
    micrograph, another for another micrograph or another `null_draw`; none when not
    asked."""
    identity = ScoreUNet(UNetConfig(base_channels=4, channel_multipliers=(1, 2), norm_groups=0))
    image = np.random.default_rng(5).poisson(30.0, (256, 256)).astype(np.float32)
    settings = DenoiseSettings(tile=128, overlap=16)
    prepared = prepare(image, 4.0, 4.0, settings)
    plain = denoise_prepared([prepared], identity.eval(), settings)[0].null
    tile = fit_tile(256, 256, 128, 16, identity.size_multiple)  # 96: the micrograph's tiles
    assert plain.shape == (NULL_TILES, tile, tile) and plain.dtype == np.float32
    assert abs(np.corrcoef(plain[0].ravel(), plain[1].ravel())[0, 1]) < 0.1  # independent
    assert plain.mean() == pytest.approx(image.mean(), rel=0.01)
    noise_std = prepared.sigma * prepared.normalised_unit
    assert plain.std() == pytest.approx(noise_std, rel=0.1)
    again = denoise_prepared([prepared], identity.eval(), settings)[0].null
    assert np.array_equal(plain, again)
    redrawn = denoise_prepared([prepared], identity.eval(), settings, null_draw=1)[0].null
    other_image = np.random.default_rng(6).poisson(30.0, (256, 256)).astype(np.float32)
    other = prepare(other_image, 4.0, 4.0, settings)
    for different in (redrawn, denoise_prepared([other], identity.eval(), settings)[0].null):
        assert different.std() == pytest.approx(noise_std, rel=0.1)
        assert abs(np.corrcoef(different.ravel(), plain.ravel())[0, 1]) < 0.1
    denoised = denoise_prepared([prepared], model, settings)[0]
    assert denoised.guard.passed and not np.allclose(denoised.null, plain, atol=1e-3 * noise_std)
    wild = ScoreUNet(UNetConfig(base_channels=4, channel_multipliers=(1, 2), norm_groups=0))
    torch.nn.init.normal_(wild.head.weight, std=50.0)  # a score far beyond the noise
    rejected = denoise_prepared([prepared], wild.eval(), settings)[0]
    assert not rejected.guard.passed and np.allclose(rejected.null, plain, atol=1e-4)
    assert denoise_prepared([prepared], model, settings, null=False)[0].null is None
