"""Target guidance from a reference density (METHOD §3).

1. `make_templates`: clean projections of the reference at K uniform orientations, at the
   working pixel size, low-passed to 10 Å and to 3 Å (clipped at Nyquist), optionally
   through a CTF, particles dark, boxed to the crop size and normalised like micrographs.
   `load_templates` caches them on disk keyed by everything that defines them.
2. `retrieve_targets`: for each crop, cosine similarity of the U-Net's bottleneck features
   to the templates' gives a softmax-weighted soft target ȳ (half from each low-pass set)
   and a gate g = max cosine.
3. `tsm_loss`: the target score-matching term, standardised, masked to structure, gated.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamdenoise.model.inference import NORM_CLIP, NORM_SCALE
from streamdenoise.physics.ctf import ctf_2d
from streamdenoise.physics.density import Scatterers
from streamdenoise.physics.projection import random_rotations, render_projections

GATE_CENTRE = 0.93
GATE_SLOPE = 3.0
TEMPERATURE = 0.5
TSM_WEIGHT = 0.08


@dataclass(frozen=True)
class TemplateSpec:
    """What defines a template set: pixel size (Å/px), box (px), count K, low-pass
    resolutions (Å), and an optional CTF defocus (Å; None: no CTF, plain dark projections)."""

    pixel_size: float
    box: int
    count: int = 256
    resolutions: tuple[float, float] = (10.0, 3.0)
    defocus: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class TemplateSet:
    """Normalised templates: `sets` (R, K, box, box) float32, one stack per resolution,
    and `spread` σ, the std of the clean template pixels (normalised units)."""

    sets: np.ndarray
    spread: float
    spec: TemplateSpec


def normalise_like_micrograph(image: np.ndarray) -> np.ndarray:
    """Normalise one (H, W) image as micrographs are: (x − mean)/std, clip ±5, /5."""
    centred = image - image.mean()
    return np.clip(centred / max(float(centred.std()), 1e-12), -NORM_CLIP, NORM_CLIP) / NORM_SCALE


def low_pass(images: np.ndarray, pixel_size: float, resolution: float) -> np.ndarray:
    """Sharp low-pass of images (..., H, W) at `resolution` Å (clipped at Nyquist)."""
    h, w = images.shape[-2:]
    k = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None]) / pixel_size
    cutoff = min(1.0 / resolution, 0.5 / pixel_size)
    spectrum = np.fft.rfft2(images) * (k <= cutoff)
    return np.fft.irfft2(spectrum, s=(h, w)).astype(np.float32)


def make_templates(scatterers: Scatterers, spec: TemplateSpec) -> TemplateSet:
    """Build the normalised template set of `scatterers` for `spec` (pure, no caching)."""
    rotations = random_rotations(spec.count, np.random.default_rng(spec.seed))
    projections = render_projections(scatterers, rotations, spec.box, spec.pixel_size)
    if spec.defocus is not None:
        ctf = ctf_2d((spec.box, spec.box), spec.pixel_size, defocus_u=spec.defocus)
        projections = np.fft.irfft2(np.fft.rfft2(projections) * ctf, s=(spec.box,) * 2)
    else:
        projections = -projections  # particles dark, as in an underfocused micrograph
    sets = np.stack(
        [
            np.stack(
                [normalise_like_micrograph(t) for t in low_pass(projections, spec.pixel_size, r)]
            )
            for r in spec.resolutions
        ]
    ).astype(np.float32)
    return TemplateSet(sets=sets, spread=float(sets.std()), spec=spec)


def template_cache_key(source: str, spec: TemplateSpec) -> str:
    """A hash of the reference file's bytes (or its name) and the spec."""
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    path = Path(source)
    digest.update(path.read_bytes() if path.is_file() else source.encode())
    return digest.hexdigest()[:16]


def cache_directory() -> Path:
    """$STREAMDENOISE_CACHE, else $XDG_CACHE_HOME/streamdenoise, else ~/.cache/streamdenoise."""
    if "STREAMDENOISE_CACHE" in os.environ:
        return Path(os.environ["STREAMDENOISE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamdenoise"


def load_templates(scatterers: Scatterers, spec: TemplateSpec) -> TemplateSet:
    """`make_templates`, cached as .npz under `cache_directory()/templates`."""
    path = cache_directory() / "templates" / f"{template_cache_key(scatterers.source, spec)}.npz"
    if path.is_file():
        try:
            with np.load(path) as cached:
                return TemplateSet(sets=cached["sets"], spread=float(cached["spread"]), spec=spec)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a broken cache entry is rebuilt
    templates = make_templates(scatterers, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(temporary, sets=templates.sets, spread=templates.spread)
    os.replace(temporary, path)
    return templates


def template_features(model: nn.Module, templates: torch.Tensor) -> torch.Tensor:
    """Bottleneck features of every template: (R, K, box, box) → (R, K, C), no gradient."""
    r, k = templates.shape[:2]
    with torch.no_grad():
        flat = templates.reshape(r * k, 1, *templates.shape[-2:])
        features = torch.cat([model.bottleneck_features(chunk) for chunk in flat.split(64)])
    return features.reshape(r, k, -1)


def retrieve_targets(
    crop_features: torch.Tensor,
    features: torch.Tensor,
    templates: torch.Tensor,
    temperature: float = TEMPERATURE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft reference targets for crops.

    crop_features: (B, C); features: (R, K, C) template features; templates: (R, K, H, W).
    Within each resolution set, ȳ_r = Σ_k softmax_k(c_k / T) t_k with c_k the cosine
    similarity; ȳ is the mean over sets. Returns (ȳ (B, 1, H, W), gate g (B,) = max cos).
    """
    crop = torch.nn.functional.normalize(crop_features, dim=-1)
    refs = torch.nn.functional.normalize(features, dim=-1)
    cosine = torch.einsum("bc,rkc->brk", crop, refs)  # (B, R, K)
    weights = torch.softmax(cosine / temperature, dim=-1)
    target = torch.einsum("brk,rkhw->bhw", weights, templates) / templates.shape[0]
    return target[:, None], cosine.amax(dim=(1, 2))


def gate(max_cosine: torch.Tensor) -> torch.Tensor:
    """w = sigmoid(3 (g − 0.93)): how much a crop's reference match is trusted."""
    return torch.sigmoid(GATE_SLOPE * (max_cosine - GATE_CENTRE))


def guidance_ramp(step: int, warmup: int, ramp: int) -> float:
    """λ(t): 0 during `warmup` steps, then linear to 1 over `ramp` steps."""
    if step < warmup:
        return 0.0
    return min(1.0, (step - warmup + 1) / max(ramp, 1))


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """Per image (B, 1, H, W): zero mean, unit std."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    return (x - mean) / std


def structure_mask(x: torch.Tensor) -> torch.Tensor:
    """1 where |∂x x| + |∂y x| exceeds its batch mean, else 0: (B, 1, H, W) → same."""
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, 1:] = (x[..., :, 1:] - x[..., :, :-1]).abs()
    dy[..., 1:, :] = (x[..., 1:, :] - x[..., :-1, :]).abs()
    magnitude = dx + dy
    return (magnitude > magnitude.mean()).to(x.dtype)


def tsm_terms(
    score: torch.Tensor,
    x_tilde: torch.Tensor,
    target: torch.Tensor,
    sigma_a: float,
    spread: float,
    toward: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prediction P and target T of the TSM term (before standardising).

    score: s_θ(x̃) (B, 1, H, W); x_tilde: the perturbed, rescaled crop; target: ȳ.
    P = σ_a / (σ √(σ_a² + σ²)) · σ_a s_θ(x̃);  T = ±(ȳ / √(σ_a² + σ²) − x̃) / σ, "+" pointing
    toward the reference (the public code's "−" is available as toward=False).
    """
    scale = math.sqrt(sigma_a**2 + spread**2)
    prediction = sigma_a / (spread * scale) * sigma_a * score
    direction = (target / scale - x_tilde) / spread
    return prediction, direction if toward else -direction


def tsm_loss(
    model: nn.Module,
    y: torch.Tensor,
    target: torch.Tensor,
    max_cosine: torch.Tensor,
    sigma_a: float,
    spread: float,
    toward: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gated target score-matching loss mean_b w_b · L_TSM,b (METHOD §3.3), a scalar.

    y: noisy normalised crops (B, 1, H, W); target: ȳ (B, 1, H, W); max_cosine: g (B,).
    L_TSM = (σ_a² + σ²) · mean(M ⊙ (P̂ − T̂)²) per crop, P̂ and T̂ standardised per crop.
    """
    scale = math.sqrt(sigma_a**2 + spread**2)
    noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    x_tilde = y / scale + sigma_a * noise
    prediction, direction = tsm_terms(model(x_tilde), x_tilde, target, sigma_a, spread, toward)
    mask = structure_mask(x_tilde)
    per_crop = (mask * (_standardise(prediction) - _standardise(direction)) ** 2).mean(
        dim=(1, 2, 3)
    )
    return (gate(max_cosine) * scale**2 * per_crop).mean()
