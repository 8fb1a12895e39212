"""Training the score network: data preparation, the loop, checkpoints, adaptation.

Pure of file formats: micrographs come in as arrays; the only file this module writes is
the training checkpoint (model, optimiser, step, RNG states), atomically, for `--resume`.

Objectives (METHOD §2, §3): with clean images (the simulator) the clean-target DSM at the
crops' own noise level; without them the AR-DAE loss from noisy data alone with σ_a
annealed; with a reference, plus the gated target score-matching term after a warm-up.
Adapting a model to a session (`adapt`) uses the blind-spot loss instead, chosen by
measurement on real micrographs (docs/model.md), and swaps only on a held-out,
truth-free picking criterion (`stats.criterion`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from streamdenoise.model.guidance import (
    TSM_WEIGHT,
    TemplateSet,
    guidance_ramp,
    retrieve_targets,
    template_features,
    tsm_loss,
)
from streamdenoise.model.inference import (
    NORM_SCALE,
    live_denoise,
    normalize,
)
from streamdenoise.model.losses import (
    blind_spot_loss,
    dsm_loss_clean,
    dsm_loss_noisy,
    sigma_schedule,
)
from streamdenoise.physics.binning import bin_to_pixel_size
from streamdenoise.stats.criterion import response_correlation
from streamdenoise.stats.noise import estimate_noise_sigma, estimate_noise_spectrum

BLIND_SPOT_STRIDE = 4
"""Pitch of the hidden-pixel grid of the blind-spot loss (1/16 of the pixels hidden)."""


@dataclass(frozen=True)
class TrainingImage:
    """One training micrograph at the working pixel size, normalised.

    noisy: (H, W) float32; clean: (H, W) float32 in the same normalisation, or None.
    """

    noisy: np.ndarray
    clean: np.ndarray | None = None


def prepare_image(
    noisy: np.ndarray,
    pixel_size: float,
    working_pixel_size: float,
    clean: np.ndarray | None = None,
    *,
    noise_unit: bool = False,
) -> TrainingImage:
    """Bin (Fourier crop) to the working pixel size and normalise; the clean image, if
    given, is binned alike and mapped with the noisy image's mean and std.

    noise_unit: for a model with `noise_unit_input`, divide both by the noise std in
    normalised units: the std of noisy − clean when the clean image is known, else the
    estimate the denoiser uses (`estimate_noise_sigma`)."""
    binned, _ = bin_to_pixel_size(noisy, pixel_size, working_pixel_size)
    normed, mean, std = normalize(binned)
    clean_normed = None
    if clean is not None:
        clean_binned, _ = bin_to_pixel_size(clean, pixel_size, working_pixel_size)
        clean_normed = ((clean_binned - mean) / (NORM_SCALE * std)).astype(np.float32)
    if noise_unit:
        sigma = (
            float(np.std(normed - clean_normed))
            if clean_normed is not None
            else estimate_noise_sigma(normed)
        )
        normed = (normed / sigma).astype(np.float32)
        if clean_normed is not None:
            clean_normed = (clean_normed / sigma).astype(np.float32)
    return TrainingImage(normed, clean_normed)


def _augment(crop: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 symmetries of the square (flips and 90° rotations) of (..., H, W)."""
    crop = np.rot90(crop, code % 4, axes=(-2, -1))
    return crop[..., ::-1] if code >= 4 else crop


def sample_crops(
    images: Sequence[TrainingImage], batch: int, crop: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random augmented crops: (y (B, 1, c, c), x (B, 1, c, c) or None) as float32 tensors."""
    noisy, clean = [], []
    for _ in range(batch):
        image = images[rng.integers(len(images))]
        h, w = image.noisy.shape
        if h < crop or w < crop:
            raise ValueError(f"micrograph of {w}×{h} px is smaller than the {crop} px crop")
        top, left = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        code = int(rng.integers(8))
        window = (slice(top, top + crop), slice(left, left + crop))
        noisy.append(_augment(image.noisy[window], code))
        if image.clean is not None:
            clean.append(_augment(image.clean[window], code))
    y = torch.from_numpy(np.ascontiguousarray(np.stack(noisy)[:, None]))
    if clean and len(clean) != batch:
        raise ValueError("mix of micrographs with and without clean images")
    x = torch.from_numpy(np.ascontiguousarray(np.stack(clean)[:, None])) if clean else None
    return y, x


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. Units: crop in pixels at the working pixel size; σ in
    normalised units; guidance steps count optimiser steps."""

    steps: int = 2000
    batch: int = 8
    crop: int = 128
    learning_rate: float = 5e-4
    cosine_decay: bool = True
    sigma_start: float = 0.2
    sigma_end: float = 0.05
    validation_every: int = 100
    checkpoint_every: int = 200
    seed: int = 0
    guidance_warmup: int = 200
    guidance_ramp: int = 300
    guidance_refresh: int = 50
    guidance_toward: bool = True
    objective: Literal["dsm", "blind_spot"] = "dsm"
    """"dsm": clean-target DSM with clean images, else AR-DAE (σ_a annealed);
    "blind_spot": `blind_spot_loss` from noisy crops alone (session adaptation)."""


@dataclass
class TrainState:
    """What a checkpoint holds besides the weights."""

    step: int = 0
    history: list[dict] = field(default_factory=list)


def _validation_loss(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
    seed: int,
    sigma_a: float,
) -> float:
    """Held-out loss on fixed crops with fixed noise: clean DSM if clean, else AR-DAE at
    `sigma_a` (the end of the schedule)."""
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for y, x in batches:
            if x is not None:
                total += float(dsm_loss_clean(model, y, x))
            else:
                total += float(dsm_loss_noisy(model, y, sigma_a, generator=generator))
    return total / len(batches)


def _to_device(
    batch: tuple[torch.Tensor, torch.Tensor | None], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    y, x = batch
    return y.to(device), None if x is None else x.to(device)


def _save_checkpoint(path: Path, model: nn.Module, optimiser, state: TrainState, rng) -> None:
    payload = {
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "state": asdict(state),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, temporary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def train(
    model: nn.Module,
    images: Sequence[TrainingImage],
    config: TrainConfig,
    *,
    validation: Sequence[TrainingImage] = (),
    templates: TemplateSet | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, float, float | None], None] | None = None,
    device: torch.device | str = "cpu",
) -> TrainState:
    """Train `model` in place; returns the state with the validation history.

    images / validation: training and held-out micrographs (all with clean images, or
    none). templates: reference templates to add target guidance. checkpoint: file
    written every `checkpoint_every` steps and at the end; with `resume`, training
    continues from it. on_step(step, loss, validation_loss or None) reports progress.
    """
    if not images:
        raise ValueError("no training micrographs")
    device = torch.device(device)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    state = TrainState()
    if resume and checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        state = TrainState(**saved["state"])
        rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
    held_out = validation or images[-1:]
    validation_rng = np.random.default_rng(config.seed + 1)
    validation_batches = [
        _to_device(sample_crops(held_out, config.batch, config.crop, validation_rng), device)
        for _ in range(4)
    ]
    supervised = images[0].clean is not None
    guide = None
    if templates is not None:
        guide = torch.from_numpy(templates.sets).to(device)
    features = None
    while state.step < config.steps:
        step = state.step
        y, x = sample_crops(images, config.batch, config.crop, rng)
        y = y.to(device)
        sigma_a = sigma_schedule(step, config.steps, config.sigma_start, config.sigma_end)
        if config.objective == "blind_spot":
            crop_sigmas = [estimate_noise_sigma(c[0]) for c in y.cpu().numpy()]
            offset = (int(rng.integers(BLIND_SPOT_STRIDE)), int(rng.integers(BLIND_SPOT_STRIDE)))
            loss = blind_spot_loss(
                model, y, torch.tensor(crop_sigmas, device=device), offset, BLIND_SPOT_STRIDE
            )
        elif supervised:
            loss = dsm_loss_clean(model, y, x.to(device))
        else:
            loss = dsm_loss_noisy(model, y, sigma_a)
        ramp = guidance_ramp(step, config.guidance_warmup, config.guidance_ramp)
        if guide is not None and templates is not None and ramp > 0:
            if features is None or step % config.guidance_refresh == 0:
                features = template_features(model, guide)
            with torch.no_grad():
                target, max_cosine = retrieve_targets(model.bottleneck_features(y), features, guide)
            loss = loss + TSM_WEIGHT * ramp * tsm_loss(
                model, y, target, max_cosine, sigma_a, templates.spread, config.guidance_toward
            )
        if config.cosine_decay:
            progress = step / max(config.steps - 1, 1)
            for group in optimiser.param_groups:
                group["lr"] = config.learning_rate * (
                    0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))
                )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        state.step += 1
        validation_loss = None
        if state.step % config.validation_every == 0 or state.step == config.steps:
            model.eval()
            validation_loss = _validation_loss(
                model,
                [
                    (a.to(device), None if b is None else b.to(device))
                    for a, b in validation_batches
                ],
                config.seed,
                config.sigma_end,
            )
            model.train()
            state.history.append(
                {
                    "step": state.step,
                    "loss": float(loss.detach()),
                    "validation_loss": validation_loss,
                }
            )
        if checkpoint is not None and (
            state.step % config.checkpoint_every == 0 or state.step == config.steps
        ):
            _save_checkpoint(checkpoint, model, optimiser, state, rng)
        if on_step is not None:
            on_step(state.step, float(loss.detach()), validation_loss)
    model.eval()
    return state


CRITERION_MARGIN = 0.015
"""How much an adapted model's held-out criterion must gain before it is swapped in: the
accuracy to which `response_correlation` estimates the true correlation (tests/
test_criterion.py). On real apoferritin a gain of 0.005 came with a lower picking AP
(benchmarks/RESULTS.md, "Real data, averaged apoferritin"): smaller gains are noise."""


@dataclass(frozen=True)
class AdaptationResult:
    """Outcome of adapting a model to a session: the candidate model and the held-out
    criterion (the picker-response correlation of `session_criterion`) of the input left
    as it is, of the resident model and of the candidate; `margin` is the gain the swap
    rule asks for."""

    model: nn.Module
    criterion_input: float
    criterion_before: float
    criterion_after: float
    margin: float = CRITERION_MARGIN

    @property
    def improved(self) -> bool:
        """Whether the adapted weights should replace the resident ones: the candidate
        must beat both the resident model and leaving the micrographs undenoised, each by
        more than `margin`."""
        best_so_far = max(self.criterion_before, self.criterion_input)
        return self.criterion_after > best_so_far + self.margin


def live_denoiser(
    model: nn.Module, sigma: float, device: torch.device | str = "cpu"
) -> Callable[[np.ndarray], np.ndarray]:
    """The live denoiser (guard off) as a function (H, W) → (H, W) in the input's units,
    with the noise std fixed at `sigma` (input units) whatever the input: a smooth
    function of its input, as `response_correlation` needs."""

    def denoise(y: np.ndarray) -> np.ndarray:
        # live_denoise normalises y; σ̂ follows into those units.
        scale = NORM_SCALE * float(np.std(y))
        return live_denoise(y, model, device=device, sigma=sigma / scale, guard=False)

    return denoise


def session_criterion(
    model: nn.Module | None,
    images: Sequence[TrainingImage],
    diameter: float,
    device: torch.device | str = "cpu",
) -> float:
    """Mean `response_correlation` of the live denoiser (guard off) over `images`, for
    particles of `diameter` pixels; `model` None scores the input itself. nan where no
    image has anything to detect."""
    values = []
    for image in images:
        spectrum = estimate_noise_spectrum(image.noisy)
        denoise = (
            np.asarray if model is None else live_denoiser(model, spectrum.pixel_sigma, device)
        )
        values.append(response_correlation(denoise, image.noisy, spectrum, diameter))
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def adapt(
    model: nn.Module,
    session_images: Sequence[TrainingImage],
    *,
    diameter: float,
    steps: int = 200,
    batch: int = 8,
    crop: int = 128,
    learning_rate: float = 3e-4,
    held_out_fraction: float = 0.25,
    seed: int = 0,
    templates: TemplateSet | None = None,
    device: torch.device | str = "cpu",
    margin: float = CRITERION_MARGIN,
) -> AdaptationResult:
    """Fine-tune a copy of the resident `model` on this session's micrographs (noisy only,
    prepared with `prepare_image(..., noise_unit=model.noise_unit_input)`) with the
    blind-spot loss (`losses.blind_spot_loss`; with `templates`, plus target guidance
    from the first step, ramped over a third of the steps).

    The last `held_out_fraction` of the micrographs (at least one) is not trained on; it
    scores the input, the resident and the candidate with `session_criterion` for particles
    of `diameter` pixels. The resident model is not modified; swap in `result.model` when
    `result.improved` (the candidate gained more than `margin` on the criterion).
    """
    if len(session_images) < 2:
        raise ValueError("adaptation needs at least two micrographs (one held out)")
    noisy_only = [TrainingImage(image.noisy) for image in session_images]
    held = max(1, math.floor(len(noisy_only) * held_out_fraction))
    train_images, held_out = noisy_only[:-held], noisy_only[-held:]
    device = torch.device(device)
    model = model.to(device).eval()
    criterion_input = session_criterion(None, held_out, diameter)
    criterion_before = session_criterion(model, held_out, diameter, device)
    candidate = copy.deepcopy(model)
    config = TrainConfig(
        steps=steps,
        batch=batch,
        crop=crop,
        learning_rate=learning_rate,
        objective="blind_spot",
        validation_every=max(steps, 1),
        checkpoint_every=max(steps, 1),
        seed=seed,
        guidance_warmup=0,
        guidance_ramp=max(steps // 3, 1),
    )
    train(candidate, train_images, config, validation=held_out, templates=templates, device=device)
    criterion_after = session_criterion(candidate.eval(), held_out, diameter, device)
    return AdaptationResult(candidate, criterion_input, criterion_before, criterion_after, margin)
