"""Training objectives for the score network (METHOD §2).

Every loss is a plain function `(model, tensors, ...) -> scalar tensor`, so other objectives
(the target-guided term of METHOD §3, in its own module) can be added next to these and
summed by the trainer. Images are normalised micrographs (B, 1, H, W); the model maps such a
batch to its score (B, 1, H, W) in normalised units (1/intensity).

"mean ‖·‖²" is taken over every pixel of the batch, so an untrained (zero-score) model scores
1 on both losses (in expectation), and the numbers are comparable across crop sizes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sigma_schedule(step: int, total_steps: int, start: float = 0.2, end: float = 0.05) -> float:
    """Perturbation level σ_a for the noisy-data loss at a training step.

    Geometric annealing: σ_a = start · (end / start)**t with t = step / (total_steps − 1),
    clamped to [0, 1], so step 0 gives `start` and the last step (total_steps − 1) gives
    `end`; steps past the end stay at `end`. Geometric (constant ratio per step) because the
    loss's difficulty scales with log σ_a, not σ_a. Both the perturbation and the loss
    multiplier use this same value (`dsm_loss_noisy`).

    Args:
        step: 0-based training step, >= 0.
        total_steps: number of steps in the run, >= 1.
        start, end: σ_a at the first and last step, in normalised units, > 0.
    """
    if step < 0 or total_steps < 1:
        raise ValueError(f"need step >= 0 and total_steps >= 1, got {step}, {total_steps}")
    if not (start > 0 and end > 0):
        raise ValueError(f"start and end must be > 0, got {start}, {end}")
    t = min(step / (total_steps - 1), 1.0) if total_steps > 1 else 0.0
    return start * math.exp(t * math.log(end / start))


def _per_image(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or (B,) tensor as a (B, 1, 1, 1) (or 0-d) tensor broadcastable against `like`."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    if t.shape != like.shape[:1]:
        raise ValueError(
            f"per-image value must have shape ({like.shape[0]},), got {tuple(t.shape)}"
        )
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def _check_images(name: str, t: torch.Tensor) -> None:
    if t.ndim != 4 or t.shape[1] != 1:
        raise ValueError(f"{name} must have shape (B, 1, H, W), got {tuple(t.shape)}")


def dsm_loss_noisy(
    model: nn.Module,
    y: torch.Tensor,
    sigma_a: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """AR-DAE denoising score matching from noisy micrographs alone (METHOD §2).

        ỹ = y + σ_a u,  u ~ N(0, I);   L = mean ‖σ_a s_θ(ỹ) + u‖²

    Its minimiser is the score of the noisy data y smoothed by N(0, σ_a²), which tends to
    the score of y as σ_a → 0 (anneal with `sigma_schedule`).

    Args:
        model: score network, (B, 1, H, W) → (B, 1, H, W).
        y: noisy normalised crops, (B, 1, H, W).
        sigma_a: perturbation std, normalised units: a float or a (B,) tensor (one per crop).
        generator: source of u; must live on y's device. None uses the global RNG.

    Returns:
        Scalar loss tensor (mean over all pixels).
    """
    _check_images("y", y)
    sig = _per_image(sigma_a, y)
    u = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return (sig * model(y + sig * u) + u).square().mean()


def dsm_loss_clean(
    model: nn.Module,
    y: torch.Tensor,
    x: torch.Tensor,
    sigma: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Supervised denoising score matching when the clean image is known (simulator).

        n = y − x;   L = mean ‖σ s_θ(y) + n / σ‖²

    For Gaussian n of std σ the minimiser is the score of the noisy-data distribution at
    y, i.e. s_θ(y) = (E[x | y] − y) / σ², so Tweedie's formula returns the posterior mean.

    Args:
        model: score network, (B, 1, H, W) → (B, 1, H, W).
        y: noisy normalised crops, (B, 1, H, W).
        x: the matching clean crops, (B, 1, H, W), same normalisation as y.
        sigma: per-crop noise std in normalised units, a float or a (B,) tensor; None
            measures it as the (population) std of y − x over each crop.

    Returns:
        Scalar loss tensor (mean over all pixels).
    """
    _check_images("y", y)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    n = y - x
    if sigma is None:
        sig = n.flatten(1).std(dim=1, correction=0).reshape(-1, 1, 1, 1)
    else:
        sig = _per_image(sigma, y)
    if not bool((sig > 0).all()):
        raise ValueError("noise std sigma must be > 0 for every crop")
    return (sig * model(y) + n / sig).square().mean()


def blind_spot_loss(
    model: nn.Module,
    y: torch.Tensor,
    sigma: float | torch.Tensor,
    offset: tuple[int, int],
    stride: int = 4,
) -> torch.Tensor:
    """Blind-spot (Noise2Self) loss of the Tweedie denoiser, from noisy micrographs alone.

    The pixels on a grid of pitch `stride` starting at `offset` (row, column) are replaced
    by the mean of their four neighbours; the denoiser x̂ = ỹ + σ² s_θ(ỹ) of the masked
    image ỹ must then predict the hidden pixels. Since the noise of a hidden pixel is
    independent of everything the network saw, the loss is the denoiser's mean squared
    error to the clean image plus the noise variance, so it cannot be lowered by copying
    noise (the identity scores the interpolation error).

    Args:
        model: score network, (B, 1, H, W) → (B, 1, H, W).
        y: noisy normalised crops, (B, 1, H, W), H, W ≥ 2.
        sigma: each crop's noise std σ̂, normalised units: a float or a (B,) tensor.
        offset: (row, column) of the first hidden pixel, each in [0, stride).

    Returns:
        Scalar loss tensor (mean over the hidden pixels).
    """
    _check_images("y", y)
    sig = _per_image(sigma, y)
    padded = F.pad(y, (1, 1, 1, 1), mode="reflect")
    neighbours = 0.25 * (
        padded[..., :-2, 1:-1]
        + padded[..., 2:, 1:-1]
        + padded[..., 1:-1, :-2]
        + padded[..., 1:-1, 2:]
    )
    hidden = torch.zeros(y.shape[-2:], dtype=torch.bool, device=y.device)
    hidden[offset[0] :: stride, offset[1] :: stride] = True
    masked = torch.where(hidden, neighbours, y)
    denoised = masked + sig**2 * model(masked)
    return (denoised - y)[..., hidden].square().mean()
