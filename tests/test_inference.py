"""Inference: normalisation, noise estimate, Tweedie on analytic scores, live and faithful modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from streamdenoise.model.inference import (
    denormalize,
    faithful_denoise,
    live_denoise,
    normalize,
    tweedie,
)
from streamdenoise.model.unet import ScoreUNet, UNetConfig
from streamdenoise.stats.noise import estimate_noise_sigma

TINY = UNetConfig(base_channels=8, channel_multipliers=(1, 2, 2), norm_groups=4)


class _ConstantScore(nn.Module):
    """Score c everywhere; records the batch shapes it sees."""

    size_multiple = 4

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(y.shape))
        return torch.full_like(y, self.c)


def _micrograph(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Gradient + blobs + white noise, in detector-like units (mean ~100)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    signal = 0.002 * xx + 0.001 * yy
    for _ in range(20):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 12)
        signal -= 1.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    return (100 + signal + rng.standard_normal((h, w))).astype(np.float32)


def test_normalize_scales_to_std_one_fifth_and_round_trips() -> None:
    image = _micrograph(200, 150)
    normed, mean, std = normalize(image)
    assert normed.dtype == np.float32
    assert mean == pytest.approx(float(image.astype(np.float64).mean()))
    assert normed.mean() == pytest.approx(0.0, abs=1e-6)
    assert normed.std() == pytest.approx(0.2, rel=1e-3)
    np.testing.assert_allclose(denormalize(normed, mean, std), image, rtol=1e-6)


def test_normalize_clips_outliers_at_five_sigma() -> None:
    image = np.random.default_rng(0).standard_normal((100, 100)).astype(np.float32)
    image[3, 4] = 1e4  # a hot pixel
    normed, _, _ = normalize(image)
    assert normed.max() == pytest.approx(1.0)
    assert normed.min() >= -1.0


@pytest.mark.parametrize("bad", [np.full((8, 8), 3.0), np.array([[1.0, np.nan], [0.0, 1.0]])])
def test_normalize_rejects_constant_or_non_finite_images(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        normalize(bad)


@pytest.mark.parametrize("sigma", [0.03, 0.1, 0.2])
def test_noise_sigma_from_the_outer_fourier_annulus(sigma: float) -> None:
    rng = np.random.default_rng(1)
    h, w = 512, 384
    yy, xx = np.mgrid[0:h, 0:w] / 100.0
    smooth = 0.3 * yy + 0.2 * np.sin(xx * 2.0) * np.cos(yy * 1.5)  # gradient + slow waves
    for _ in range(30):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 15)
        smooth -= 0.3 * np.exp(-((yy * 100 - cy) ** 2 + (xx * 100 - cx) ** 2) / (2 * r**2))
    noisy = smooth + sigma * rng.standard_normal((h, w))
    assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.05)


def test_noise_sigma_rejects_tiny_images() -> None:
    with pytest.raises(ValueError):
        estimate_noise_sigma(np.zeros((4, 100)))


def test_tweedie_with_gaussian_score_is_the_posterior_mean() -> None:
    """x ~ N(0, s²), y = x + n: score −y/(s²+σ²) → x̂ = s²/(s²+σ²)·y, which is E[x|y]."""
    rng = np.random.default_rng(2)
    s, sig = 0.2, 0.15
    x = s * rng.standard_normal(400_000)
    y = x + sig * rng.standard_normal(x.shape)
    x_hat = tweedie(y, -y / (s**2 + sig**2), sig)
    np.testing.assert_allclose(x_hat, s**2 / (s**2 + sig**2) * y, rtol=1e-12)
    # and it is the conditional mean of the samples: E[x − x̂ | y] ≈ 0 in every y bin
    bins = np.digitize(y, np.linspace(-0.4, 0.4, 9))
    for b in range(1, 9):
        sel = bins == b
        assert abs(np.mean(x[sel] - x_hat[sel])) < 4 * 0.12 / math.sqrt(sel.sum()) + 1e-3
    # works on tensors with a per-image sigma too
    yt = torch.from_numpy(y[:8].reshape(2, 1, 2, 2))
    sig_t = torch.tensor([0.1, 0.2]).reshape(2, 1, 1, 1).double()
    torch.testing.assert_close(tweedie(yt, -yt, sig_t), yt * (1 - sig_t**2))


def test_tweedie_with_gaussian_mixture_score_is_the_posterior_mean() -> None:
    """x ~ ½N(−μ, s²) + ½N(μ, s²): nonlinear posterior mean, known in closed form."""
    rng = np.random.default_rng(3)
    mu, s, sig = 0.3, 0.05, 0.1
    v = s**2 + sig**2
    y = np.linspace(-0.8, 0.8, 1001)
    centres = np.array([-mu, mu])[:, None]
    log_lik = -((y - centres) ** 2) / (2 * v)
    resp = np.exp(log_lik - log_lik.max(axis=0))
    resp /= resp.sum(axis=0)  # posterior component probabilities
    score = np.sum(resp * (-(y - centres) / v), axis=0)  # ∇ log p(y)
    posterior_mean = np.sum(resp * (centres + s**2 / v * (y - centres)), axis=0)
    np.testing.assert_allclose(tweedie(y, score, sig), posterior_mean, rtol=1e-10, atol=1e-12)
    # Monte Carlo: samples near a given y have that mean
    comp = rng.integers(0, 2, 1_000_000)
    x = np.where(comp == 1, mu, -mu) + s * rng.standard_normal(comp.shape)
    ys = x + sig * rng.standard_normal(x.shape)
    for y0 in (-0.3, -0.05, 0.0, 0.12, 0.4):
        sel = np.abs(ys - y0) < 0.005
        assert np.mean(x[sel]) == pytest.approx(np.interp(y0, y, posterior_mean), abs=0.01)


def test_live_denoise_with_zero_score_returns_the_input() -> None:
    image = _micrograph(300, 257)
    model = ScoreUNet(TINY).eval()  # zero-initialised head: score 0
    out = live_denoise(image, model, tile=128, overlap=16, batch_size=4)
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, image, rtol=2e-7, atol=0)


def test_live_denoise_applies_tweedie_per_pixel_in_normalised_units() -> None:
    image = _micrograph(200, 130)
    _, _, std = normalize(image)
    model = _ConstantScore(0.5)
    out = live_denoise(image, model, tile=64, overlap=8, batch_size=3, sigma=0.1)
    # normalised shift σ²·c, mapped back by ×5·std
    np.testing.assert_allclose(out - image, 0.1**2 * 0.5 * 5 * std, rtol=0, atol=2e-5)
    assert set(model.shapes) == {(3, 1, 64, 64)}
    # with sigma estimated from the image instead
    expected_sigma = estimate_noise_sigma(normalize(image)[0])
    out = live_denoise(image, model, tile=64, overlap=8)
    np.testing.assert_allclose(out - image, expected_sigma**2 * 0.5 * 5 * std, rtol=0, atol=2e-5)


def _scoring_model() -> ScoreUNet:
    """The tiny network in eval mode with a random output layer (seed 0): a score that is
    not zero, so that denoising moves the image."""
    torch.manual_seed(0)
    model = ScoreUNet(TINY).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.1)
    return model


def test_live_denoise_does_not_depend_on_batch_size() -> None:
    model = _scoring_model()
    image = _micrograph(150, 140)
    one = live_denoise(image, model, tile=64, overlap=16, batch_size=1, sigma=0.2)
    three = live_denoise(image, model, tile=64, overlap=16, batch_size=3, sigma=0.2)
    assert not np.allclose(one, image)
    np.testing.assert_allclose(one, three, rtol=1e-5, atol=1e-4)


def test_live_denoise_rejects_bad_arguments() -> None:
    image = _micrograph(64, 64)
    with pytest.raises(ValueError, match="multiple"):
        live_denoise(image, ScoreUNet(TINY), tile=66, overlap=8)
    with pytest.raises(ValueError, match="2-D"):
        live_denoise(image[None], ScoreUNet(TINY), tile=64, overlap=8)


def test_faithful_denoise_with_zero_score_returns_the_input() -> None:
    image = _micrograph(250, 200)
    out = faithful_denoise(image, ScoreUNet(TINY).eval(), tile=96, stride=48, steps=2)
    np.testing.assert_allclose(out.image, image, rtol=2e-7, atol=0)


def test_faithful_denoise_steps_sum_to_one_tweedie_step() -> None:
    image = _micrograph(120, 100)
    _, _, std = normalize(image)
    model = _ConstantScore(0.1)
    out = faithful_denoise(image, model, tile=64, stride=32, steps=3, sigma=0.2, batch_size=8)
    # A constant score: three steps of σ̂²/3 · 0.1 add up to live mode's σ̂² · 0.1.
    np.testing.assert_allclose(out.image - image, 0.2**2 * 0.1 * 5 * std, rtol=0, atol=2e-5)
    live = live_denoise(image, _ConstantScore(0.1), tile=64, overlap=8, sigma=0.2)
    np.testing.assert_allclose(out.image, live, rtol=0, atol=2e-5)
    # 9 tiles (rows 0, 32, 56 × cols 0, 32, 36) in batches of 8 and 1 (an eager model gets
    # no padding), 3 passes each
    assert model.shapes == [(8, 1, 64, 64)] * 3 + [(1, 1, 64, 64)] * 3
    with pytest.raises(ValueError, match="steps"):
        faithful_denoise(image, model, steps=0)


def test_faithful_denoise_follows_the_score_between_steps() -> None:
    class _Restoring(_ConstantScore):
        """Score −x: pulls every pixel toward 0, harder the farther it is."""

        def forward(self, y: torch.Tensor) -> torch.Tensor:
            return -y

    image = _micrograph(96, 96)
    normed, mean, std = normalize(image)
    x = normed.astype(np.float64)
    for _ in range(4):
        x = x + 0.3**2 / 4 * -x
    out = faithful_denoise(image, _Restoring(0.0), tile=64, stride=32, steps=4, sigma=0.3)
    np.testing.assert_allclose(out.image, denormalize(x, mean, std), rtol=1e-5, atol=1e-3)


def test_live_denoise_in_bfloat16_on_the_cpu_is_close_to_float32() -> None:
    model = _scoring_model()
    image = _micrograph(300, 257)
    settings = {"tile": 128, "overlap": 16, "sigma": 0.2, "guard": False}
    ref = live_denoise(image, model, dtype=torch.float32, **settings)
    out = live_denoise(image, model, dtype=torch.bfloat16, **settings)
    shift = np.abs(ref - image).mean()
    assert out.dtype == np.float32 and shift > 0
    assert 0 < np.abs(out - ref).mean() < 0.05 * shift  # bfloat16 ran, and barely moved it


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_live_denoise_in_bfloat16_on_cuda_matches_float32_on_cpu() -> None:
    model = _scoring_model()
    image = _micrograph(300, 257)
    ref = live_denoise(image, model, tile=128, overlap=16, sigma=0.2, dtype=torch.float32)
    cuda_model = model.to("cuda", memory_format=torch.channels_last)
    out = live_denoise(image, cuda_model, tile=128, overlap=16, sigma=0.2)
    shift = np.abs(ref - image).mean()
    assert shift > 0
    assert np.abs(out - ref).mean() < 0.05 * shift
