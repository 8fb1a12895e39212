"""Score-matching losses: schedule, analytic optima, and that training lowers them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from streamdenoise.model.inference import tweedie
from streamdenoise.model.losses import dsm_loss_clean, dsm_loss_noisy, sigma_schedule
from streamdenoise.model.unet import ScoreUNet, UNetConfig

TINY = UNetConfig(base_channels=8, channel_multipliers=(1, 2), norm_groups=0)


class _Analytic(nn.Module):
    """A 'network' whose score is a known function of its input."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.fn(y)


def _blobs(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, size, size) smooth images: sums of 4 Gaussian blobs of random sign, std ~0.1."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = torch.zeros(n, 1, size, size)
    for _ in range(4):
        c = torch.rand(n, 2, generator=gen) * size
        r = 2 + 4 * torch.rand(n, generator=gen)
        amp = 0.3 * (torch.rand(n, generator=gen) - 0.5)
        d2 = (yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2
        img += (amp[:, None, None] * torch.exp(-d2 / (2 * r[:, None, None] ** 2)))[:, None]
    return img


def test_sigma_schedule_is_geometric_from_start_to_end() -> None:
    assert sigma_schedule(0, 101) == pytest.approx(0.2)
    assert sigma_schedule(100, 101) == pytest.approx(0.05)
    assert sigma_schedule(50, 101) == pytest.approx(math.sqrt(0.2 * 0.05))
    assert sigma_schedule(500, 101) == pytest.approx(0.05)  # past the end: stays at end
    assert sigma_schedule(0, 1) == pytest.approx(0.2)
    values = [sigma_schedule(s, 20, start=0.1, end=0.02) for s in range(20)]
    assert all(a > b for a, b in itertools.pairwise(values))
    ratios = [b / a for a, b in itertools.pairwise(values)]
    assert max(ratios) == pytest.approx(min(ratios))


@pytest.mark.parametrize("args", [(-1, 10), (0, 0), (0, 10, 0.0, 0.05), (0, 10, 0.2, -0.1)])
def test_sigma_schedule_rejects_bad_arguments(args: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        sigma_schedule(*args)  # type: ignore[arg-type]


def test_noisy_loss_of_zero_score_is_one_and_generator_makes_it_reproducible() -> None:
    zero = ScoreUNet(TINY)
    y = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    loss_a = dsm_loss_noisy(zero, y, 0.1, torch.Generator().manual_seed(5))
    loss_b = dsm_loss_noisy(zero, y, 0.1, torch.Generator().manual_seed(5))
    assert loss_a.ndim == 0
    assert torch.equal(loss_a, loss_b)
    assert loss_a.item() == pytest.approx(1.0, abs=0.05)


def test_noisy_loss_matches_analytic_optimum_on_gaussian_data() -> None:
    """y ~ N(0, v): score of ỹ = y + σ_a u is −ỹ/(v+σ_a²), and the loss there is v/(v+σ_a²).

    This holds only if the perturbation and the multiplier use the same σ_a.
    """
    gen = torch.Generator().manual_seed(1)
    v, sig_a = 0.04, 0.1
    y = math.sqrt(v) * torch.randn(16, 1, 64, 64, generator=gen)
    oracle = _Analytic(lambda t: -t / (v + sig_a**2))
    loss = dsm_loss_noisy(oracle, y, sig_a, gen).item()
    assert loss == pytest.approx(v / (v + sig_a**2), rel=0.02)
    # per-crop sigma as a (B,) tensor gives the same thing
    per_crop = dsm_loss_noisy(oracle, y, torch.full((16,), sig_a), gen).item()
    assert per_crop == pytest.approx(loss, rel=0.03)
    # a mis-scaled score is worse
    worse = _Analytic(lambda t: -1.5 * t / (v + sig_a**2))
    assert dsm_loss_noisy(worse, y, sig_a, gen).item() > loss * 1.05


def test_clean_loss_matches_analytic_optimum_and_measures_sigma() -> None:
    """x ~ N(0, v), y = x + n: the true score −y/(v+σ²) gives loss MSE(E[x|y])/σ² = v/(v+σ²)."""
    gen = torch.Generator().manual_seed(2)
    v, sig = 0.04, 0.1
    x = math.sqrt(v) * torch.randn(16, 1, 64, 64, generator=gen)
    n = torch.randn(x.shape, generator=gen)
    n = (n - n.mean(dim=(1, 2, 3), keepdim=True)) / n.std(dim=(1, 2, 3), keepdim=True, correction=0)
    y = x + sig * n  # noise std exactly sig in every crop
    oracle = _Analytic(lambda t: -t / (v + sig**2))
    measured = dsm_loss_clean(oracle, y, x)
    given = dsm_loss_clean(oracle, y, x, torch.full((16,), sig))
    torch.testing.assert_close(measured, given)
    assert measured.item() == pytest.approx(v / (v + sig**2), rel=0.02)
    worse = _Analytic(lambda t: -0.3 * t / (v + sig**2))
    assert dsm_loss_clean(worse, y, x, sig).item() > measured.item() * 1.05
    assert dsm_loss_clean(ScoreUNet(TINY), y, x).item() == pytest.approx(1.0, rel=1e-5)


def test_clean_loss_rejects_bad_inputs() -> None:
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="sigma"):
        dsm_loss_clean(ScoreUNet(TINY), x, x)  # y == x: measured std 0
    with pytest.raises(ValueError, match="same shape"):
        dsm_loss_clean(ScoreUNet(TINY), x, x[:1])
    with pytest.raises(ValueError, match=r"\(2,\)"):
        dsm_loss_clean(ScoreUNet(TINY), x + 1, x, torch.ones(3))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        dsm_loss_noisy(ScoreUNet(TINY), x[:, 0], 0.1)


def _train(
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor],
) -> tuple[float, float]:
    """Train a tiny U-Net 40 Adam steps on noisy blobs; loss on a fixed batch before/after."""
    gen = torch.Generator().manual_seed(0)
    x = _blobs(64, 32, gen)
    y = x + 0.05 * torch.randn(x.shape, generator=gen)
    torch.manual_seed(0)
    model = ScoreUNet(TINY)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def held_out() -> float:
        with torch.no_grad():
            return loss_fn(model, y[:32], x[:32], torch.Generator().manual_seed(9)).item()

    before = held_out()
    for _ in range(40):
        idx = torch.randint(0, 64, (8,), generator=gen)
        loss = loss_fn(model, y[idx], x[idx], gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, held_out()


def test_noisy_loss_decreases_with_training() -> None:
    before, after = _train(lambda m, y, x, g: dsm_loss_noisy(m, y, 0.1, g))
    assert before == pytest.approx(1.0, abs=0.05)
    assert after < 0.75 * before


def test_clean_loss_decreases_with_training() -> None:
    before, after = _train(lambda m, y, x, g: dsm_loss_clean(m, y, x))
    assert before == pytest.approx(1.0, abs=0.05)
    assert after < 0.75 * before


def test_clean_dsm_learns_the_gaussian_posterior_mean_slope() -> None:
    """x ~ N(0, s²) white, y = x + n, n ~ N(0, σ²): Tweedie with the learnt score ≈ s²/(s²+σ²)·y."""
    gen = torch.Generator().manual_seed(3)
    s, sig = 0.2, 0.1
    torch.manual_seed(0)
    model = ScoreUNet(UNetConfig(base_channels=8, channel_multipliers=(1,), norm_groups=0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        x = s * torch.randn(8, 1, 32, 32, generator=gen)
        loss = dsm_loss_clean(model, x + sig * torch.randn(x.shape, generator=gen), x, sig)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x = s * torch.randn(8, 1, 32, 32, generator=gen)
        y = x + sig * torch.randn(x.shape, generator=gen)
        x_hat = tweedie(y, model(y), sig)
    slope = ((x_hat * y).sum() / (y * y).sum()).item()
    assert slope == pytest.approx(s**2 / (s**2 + sig**2), rel=0.1)
