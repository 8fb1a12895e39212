"""Denoising with a trained score network (METHOD §4). Pure functions on arrays and tensors.

Units: micrographs come in as (H, W) arrays in any intensity scale; they are normalised per
micrograph (`normalize`), denoised in normalised units, and mapped back to the input's mean
and std (`denormalize`). The network outputs the score in normalised units (1/intensity).

Two modes, both over `streamdenoise.model.tiling`:
- `live_denoise`: large tiles, smooth blending, one Tweedie step x̂ = y + σ̂² s_θ(y), kept
  only where the do-no-harm guard (`streamdenoise.stats.guard`) finds the residual y − x̂
  consistent with noise; elsewhere the input is returned unchanged.
- `faithful_denoise`: the reference code's 192² tiles at stride 96, plainly averaged, with K
  fixed-point steps x_k = x_{k−1} + (σ̂²/K) s_θ(x_{k−1}) (the reference's noise level
  corrected; see there), guarded alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from streamdenoise.engine.batches import (
    default_batch_size,
    is_compiled,
    network_dtype,
    run_batches,
)
from streamdenoise.engine.profiling import stage
from streamdenoise.model.tiling import (
    DEFAULT_MAX_TILE,
    WindowKind,
    blend_tiles,
    extract_tiles,
    plan_tiles,
)
from streamdenoise.stats.guard import GUARD_BANDS, GuardReport, check_residual
from streamdenoise.stats.noise import NoiseSpectrum, estimate_noise_sigma, estimate_noise_spectrum

# Normalised value = clip((x − mean) / std, ±NORM_CLIP) / NORM_SCALE, so std ≈ 0.2.
NORM_CLIP = 5.0
NORM_SCALE = 5.0

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def normalize(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Per-micrograph normalisation: ((image − mean) / std, clipped to ±5) / 5.

    Args:
        image: (H, W), any real dtype and intensity scale.

    Returns:
        (normed (H, W) float32, mean, std) with mean and std in the input's units, so that
        `denormalize(normed, mean, std)` maps back (exactly, up to float32 rounding, where
        nothing was clipped).

    Raises:
        ValueError: the image is constant or holds NaN/inf.
    """
    data = np.asarray(image, dtype=np.float64)
    mean = float(data.mean())
    std = float(data.std())
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise ValueError("image holds NaN or infinite values")
    if std == 0.0:
        raise ValueError("image is constant (std 0); it cannot be normalised")
    normed = np.clip((data - mean) / std, -NORM_CLIP, NORM_CLIP) / NORM_SCALE
    return normed.astype(np.float32), mean, std


def denormalize(normed: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Inverse of `normalize` (clipping aside): (H, W) normalised → (H, W) float32."""
    return (np.asarray(normed, dtype=np.float64) * (NORM_SCALE * std) + mean).astype(np.float32)


def tweedie(y: ArrayT, score: ArrayT, sigma: float | ArrayT) -> ArrayT:
    """Tweedie's posterior mean x̂ = y + σ² · score.

    Args:
        y: noisy image(s), any shape, normalised units.
        score: ∇_y log p(y), same shape as y, 1/normalised units.
        sigma: noise std, normalised units; a float or an array broadcastable against y.

    Returns:
        x̂, same shape and type as y.
    """
    return y + sigma**2 * score


def normalised_score(
    model: nn.Module, score_fn: ScoreFn, y: torch.Tensor, sigma: torch.Tensor | float
) -> torch.Tensor:
    """The score of normalised micrographs y (B, T, T) whatever the model's input scaling.

    A model with `noise_unit_input` scores z = y / σ̂ (unit noise); since p_y(y) =
    p_z(y / σ̂) / σ̂, the score in y is s_z(y / σ̂) / σ̂. sigma: σ̂ (normalised units), a
    float or a tensor broadcastable against y.
    """
    if getattr(model, "noise_unit_input", False):
        return score_fn(y / sigma) / sigma
    return score_fn(y)


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _run_tiled(
    normed_images: Sequence[np.ndarray],
    per_image: Sequence[float],
    model: nn.Module,
    plan_args: tuple[int, int, WindowKind],
    batch_size: int | None,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
    update: Callable[[torch.Tensor, torch.Tensor, ScoreFn], torch.Tensor],
) -> list[np.ndarray]:
    """Tiles of normalised (H, W) images, batched across images → `update` → blend.

    `update(tiles, values, score_fn)` maps normalised tiles (B, T, T) float32 and each
    tile's image value `per_image[i]` (B,) to denoised tiles (B, T, T), calling
    `score_fn` (B, T, T) → (B, T, T) float32 for the network's score. Returns one (H, W)
    float32 array per image, in normalised units.
    """
    tile, overlap, window = plan_args
    multiple = int(getattr(model, "size_multiple", 1))
    if tile % multiple:
        raise ValueError(f"tile {tile} must be a multiple of the model's size multiple {multiple}")
    for normed in normed_images:
        if normed.ndim != 2:
            raise ValueError(f"expected a 2-D micrograph, got shape {normed.shape}")
    dev = torch.device(device) if device is not None else _model_device(model)
    amp_dtype = network_dtype(dev, dtype)
    use_amp = amp_dtype != torch.float32

    def score_fn(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
            return model(x[:, None])[:, 0].float()

    with stage("tile"):
        plans = [
            plan_tiles(*normed.shape, tile, overlap, window=window) for normed in normed_images
        ]
        tiles = [
            extract_tiles(normed, plan) for normed, plan in zip(normed_images, plans, strict=True)
        ]
        counts = [len(t) for t in tiles]
        values = np.repeat(np.asarray(per_image, dtype=np.float32), counts)
        stacked = np.concatenate(tiles)
    with stage("model"), torch.inference_mode():
        done = run_batches(
            stacked,
            values,
            lambda x, v: update(x, v, score_fn),
            batch_size or default_batch_size(dev),
            dev,
            pad=is_compiled(model),
        )
    bounds = np.cumsum([0, *counts])
    with stage("blend"):
        return [blend_tiles(done[bounds[i] : bounds[i + 1]], plan) for i, plan in enumerate(plans)]


@dataclass(frozen=True)
class Denoised:
    """A denoised micrograph: image (H, W) float32 in the input's scale, and the do-no-harm
    guard's report (None where no guard ran: the guard turned off, or σ̂ = 0).

    null: where asked for, noise-only tiles (k, h, w) float32 through the same denoiser,
    in the same scale: noise of the micrograph's fitted spectrum, normalised with the
    micrograph's mean and std and denoised at its σ̂ (the input noise itself where the
    guard kept the input). What the denoiser makes of noise alone, at this micrograph's
    noise level: the picking statistics count its dark blobs as the false candidates to
    expect (`streamdenoise.stats.readiness`)."""

    image: np.ndarray
    guard: GuardReport | None = None
    null: np.ndarray | None = None


def live_denoise_many(
    images: Sequence[np.ndarray],
    model: nn.Module,
    *,
    tile: int = DEFAULT_MAX_TILE,
    overlap: int = 32,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    sigmas: Sequence[float | None] | None = None,
    spectra: Sequence[NoiseSpectrum | None] | None = None,
    guard: bool = True,
    nulls: Sequence[np.ndarray | None] | None = None,
) -> list[Denoised]:
    """`live_denoise` of several micrographs whose tiles share network batches.

    images: (H_i, W_i) arrays; sigmas: σ̂ per image in normalised units (None entries are
    estimated); spectra: each image's fitted noise spectrum where the caller has it (the
    guard fits it otherwise); guard: check each output with `check_residual` and return
    the input unchanged where it fails; nulls: per image, None or noise tiles (k, h, w) in
    its normalised units, each denoised beside it, into `Denoised.null` (k, h, w). Returns
    one `Denoised` per image, (H_i, W_i) float32 in the input's scale. The blended score
    is the tiles' blend of scores: blending is linear and σ̂ is one value per image, so
    this equals blending the tiles' Tweedie outputs.
    """
    with stage("normalise"):
        normalised = [normalize(image) for image in images]
        sigmas = sigmas if sigmas is not None else [None] * len(images)
        noise = [
            sigma if sigma is not None else estimate_noise_sigma(normed)
            for (normed, _, _), sigma in zip(normalised, sigmas, strict=True)
        ]

    def update(y: torch.Tensor, sigma: torch.Tensor, score_fn: ScoreFn) -> torch.Tensor:
        return normalised_score(model, score_fn, y, sigma[:, None, None])

    nulls = nulls if nulls is not None else [None] * len(images)
    with_null = [i for i, null in enumerate(nulls) if null is not None]
    null_tiles = [(i, tile_noise) for i in with_null for tile_noise in nulls[i]]
    scores = _run_tiled(
        [normed for normed, _, _ in normalised] + [tile_noise for _, tile_noise in null_tiles],
        [*noise, *(noise[i] for i, _ in null_tiles)],
        model,
        (tile, overlap, "cosine"),
        batch_size,
        device,
        dtype,
        update,
    )
    null_scores: dict[int, list[np.ndarray]] = {}
    for (i, _), score in zip(null_tiles, scores[len(images) :], strict=True):
        null_scores.setdefault(i, []).append(score)
    results = []
    spectra = spectra if spectra is not None else [None] * len(images)
    for i, (score, (normed, mean, std), sigma, spectrum) in enumerate(
        zip(scores[: len(images)], normalised, noise, spectra, strict=True)
    ):
        denoised, report = _guarded(normed, tweedie(normed, score, sigma), sigma, guard, spectrum)
        null = None
        if i in null_scores:
            kept_input = report is not None and not report.passed
            null_input = nulls[i]
            null = (
                null_input if kept_input else tweedie(null_input, np.stack(null_scores[i]), sigma)
            )
        with stage("normalise"):
            results.append(
                Denoised(
                    denormalize(denoised, mean, std),
                    report,
                    None if null is None else denormalize(null, mean, std),
                )
            )
    return results


def live_denoise(
    image: np.ndarray,
    model: nn.Module,
    *,
    tile: int = DEFAULT_MAX_TILE,
    overlap: int = 32,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    sigma: float | None = None,
    guard: bool = True,
) -> np.ndarray:
    """Live mode: one Tweedie step per pixel over smoothly blended tiles, guarded.

    Args:
        image: (H, W) micrograph, any intensity scale (float32 expected).
        model: score network (B, 1, T, T) → (B, 1, T, T), on `device`, in eval mode.
        tile, overlap: tile side and overlap, pixels; tile a multiple of the model's
            `size_multiple`.
        batch_size: tiles per network call (the last batch is padded to this size); None:
            the device's default (`streamdenoise.engine.batches.default_batch_size`).
        device: where to run; None uses the model's device.
        dtype: the network's autocast dtype (None: `network_dtype`'s choice, bfloat16
            where the device computes it natively; torch.float32 disables autocast). The
            Tweedie step and the guard run in float32 whatever the network's dtype.
        sigma: noise std σ̂ in normalised units; None estimates it with
            `estimate_noise_sigma`.
        guard: return the input unchanged where the do-no-harm guard fails
            (`live_denoise_many`); False always returns the Tweedie step.

    Returns:
        (H, W) float32 denoised micrograph in the input's mean/std scale.
    """
    return live_denoise_many(
        [image],
        model,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        sigmas=[sigma],
        guard=guard,
    )[0].image


def faithful_denoise(
    image: np.ndarray,
    model: nn.Module,
    *,
    tile: int = 192,
    stride: int = 96,
    steps: int = 5,
    sigma: float | None = None,
    guard: bool = True,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Denoised:
    """Faithful mode: the reference code's scheme with the noise level it lacked.

    Per tile of `tile` pixels every `stride` pixels (overlaps plainly averaged), K = `steps`
    fixed-point steps x_0 = y, x_k = x_{k−1} + (σ̂²/K)·s_θ(x_{k−1}): Euler steps along the
    score whose sum is one Tweedie step, re-evaluating the score as the image moves (K = 1
    is live mode's update on small tiles). The reference code used σ(x) = 0.4 + 0.01·x
    with a step of 0.7 per iteration: σ about twice the noise std of a normalised
    micrograph (≈ 0.2), so each step was ≈ 2.8× and the five ≈ 14× a Tweedie step, which
    over-smoothed until picking failed (AP 0.07 in benchmarks/RESULTS.md).

    Args:
        image: (H, W) micrograph, any intensity scale.
        model, batch_size, device, dtype, sigma, guard: as in `live_denoise`.
        tile, stride: tile side and step between tiles, pixels (0 < stride <= tile).
        steps: K >= 1.

    Returns:
        The (H, W) float32 denoised micrograph in the input's scale, with its guard report.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    normed, mean, std = normalize(image)
    noise = sigma if sigma is not None else estimate_noise_sigma(normed)

    def update(x: torch.Tensor, values: torch.Tensor, score_fn: ScoreFn) -> torch.Tensor:
        level = values[:, None, None]
        for _ in range(steps):
            x = x + level**2 / steps * normalised_score(model, score_fn, x, level)
        return x

    plan_args: tuple[int, int, WindowKind] = (tile, tile - stride, "flat")
    out = _run_tiled([normed], [noise], model, plan_args, batch_size, device, dtype, update)[0]
    out, report = _guarded(normed, out, noise, guard, None)
    return Denoised(denormalize(out, mean, std), report)


def _guarded(
    normed: np.ndarray,
    denoised: np.ndarray,
    sigma: float,
    guard: bool,
    spectrum: NoiseSpectrum | None,
) -> tuple[np.ndarray, GuardReport | None]:
    """The do-no-harm guard on one normalised micrograph (H, W) and its denoised version,
    with the micrograph's noise spectrum (fitted here if None): (the output to keep, the
    report or None where no guard ran)."""
    if not guard or sigma <= 0:
        return denoised, None
    with stage("guard"):
        spectrum = spectrum or estimate_noise_spectrum(normed)
        shape = spectrum.band_shape(normed.shape, GUARD_BANDS)
        report = check_residual(normed, denoised, sigma, noise_shape=shape)
    return (denoised if report.passed else normed), report
