"""`streamdenoise train`: train a score model on micrographs (plain, clean-target or
target-guided), or adapt one to a session's own micrographs (`init`), and write it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from streamdenoise.model.guidance import TemplateSet
from streamdenoise.model.modelfile import LoadedModel
from streamdenoise.model.training import AdaptationResult, TrainConfig, TrainingImage


@dataclass(frozen=True)
class TrainJob:
    """What `train` was asked: micrographs → model file `out`. reference: a map or model
    for target guidance; init: a model file to adapt instead of training from scratch
    (held-out picking criterion at `particle_diameter` Å); clean_dir: noise-free
    `<stem>_clean.mrc` targets; pixel_size: working Å/px (with init: the model's);
    template_defocus: µm of CTF on the templates; guidance_away: the public code's sign."""

    micrographs: Sequence[Path]
    out: Path
    config: TrainConfig
    reference: Path | None = None
    init: Path | None = None
    particle_diameter: float = 150.0
    clean_dir: Path | None = None
    pixel_size: float = 4.0
    input_pixel_size: float | None = None
    base_channels: int = 16
    template_defocus: float | None = None
    guidance_away: bool = False
    device: str = "auto"
    resume: bool = False


@dataclass(frozen=True)
class Prepared:
    """A job's inputs, read and checked before any training."""

    images: list[TrainingImage]
    templates: TemplateSet | None
    initial: LoadedModel | None
    pixel_size: float
    device: torch.device


def prepare(job: TrainJob) -> Prepared:
    """Read and bin the micrographs, load the model to adapt and the templates; raises
    ValueError (or a StreamDenoiseError) naming the problem before any work."""
    from streamdenoise.engine.device import resolve_device
    from streamdenoise.io import read_micrograph
    from streamdenoise.io.writable import writable_file
    from streamdenoise.model.guidance import TemplateSpec, load_templates
    from streamdenoise.model.modelfile import load_model
    from streamdenoise.model.training import prepare_image
    from streamdenoise.physics.density import load_reference

    if job.init is not None and job.clean_dir is not None:
        raise ValueError("--init adapts on noisy micrographs alone; drop --clean-dir")
    writable_file(job.out, "--model-out")
    device = resolve_device(job.device)
    initial = None if job.init is None else load_model(job.init, device=device)
    pixel_size = job.pixel_size if initial is None else initial.pixel_size
    noise_unit = initial is not None and initial.model.noise_unit_input
    images = []
    for path in job.micrographs:
        micrograph = read_micrograph(path, pixel_size=job.input_pixel_size)
        clean = None
        if job.clean_dir is not None:
            clean = read_micrograph(job.clean_dir / f"{path.stem}_clean.mrc").data
        image = prepare_image(
            micrograph.data, micrograph.pixel_size, pixel_size, clean, noise_unit=noise_unit
        )
        if min(image.noisy.shape) < job.config.crop:
            height, width = image.noisy.shape
            raise ValueError(
                f"{path}: {width}×{height} px at {pixel_size:g} Å/px is smaller than "
                f"--crop {job.config.crop}"
            )
        images.append(image)
    templates = None
    if job.reference is not None:
        defocus = None if job.template_defocus is None else job.template_defocus * 1e4
        spec = TemplateSpec(pixel_size=pixel_size, box=job.config.crop, defocus=defocus)
        templates = load_templates(load_reference(job.reference), spec)
    return Prepared(images, templates, initial, pixel_size, device)


def train_model(
    job: TrainJob,
    prepared: Prepared,
    on_step: Callable[[int, float, float | None], None] | None = None,
) -> int:
    """Train a new model (the last micrograph held out for validation when there are
    several), write it to `job.out`; returns the steps done."""
    from streamdenoise.model.modelfile import save_model
    from streamdenoise.model.training import train
    from streamdenoise.model.unet import ScoreUNet, UNetConfig

    images = prepared.images
    held_out, training = (images[-1:], images[:-1]) if len(images) > 1 else (images, images)
    network = ScoreUNet(
        UNetConfig(base_channels=job.base_channels, channel_multipliers=(1, 2, 4), norm_groups=0)
    )
    checkpoint = job.out.with_name(job.out.name + ".ckpt")
    state = train(
        network,
        training,
        job.config,
        validation=held_out,
        templates=prepared.templates,
        checkpoint=checkpoint,
        resume=job.resume,
        on_step=on_step,
        device=prepared.device,
    )
    save_model(
        job.out,
        network,
        pixel_size=prepared.pixel_size,
        provenance={
            "trained_by": "streamdenoise train",
            "micrographs": [str(p) for p in job.micrographs],
            "objective": "clean-target DSM" if job.clean_dir else "AR-DAE DSM (noisy data only)",
            "guidance": job.reference is not None,
            "guidance_sign": "away" if job.guidance_away else "toward",
            "template_defocus_um": job.template_defocus,
            "reference": str(job.reference) if job.reference else None,
            "steps": state.step,
            "validation_history": state.history,
        },
    )
    checkpoint.unlink(missing_ok=True)
    return state.step


def adapt_model(job: TrainJob, prepared: Prepared) -> AdaptationResult:
    """Adapt `prepared.initial` to the micrographs; write `job.out` only if the held-out
    criterion beat both the model and no denoising by more than the criterion's margin
    (`result.improved`)."""
    from streamdenoise.model.modelfile import save_model
    from streamdenoise.model.training import adapt

    initial = prepared.initial
    assert initial is not None, "adapt_model needs a job with init"
    diameter = job.particle_diameter / initial.pixel_size
    config = job.config
    result = adapt(
        initial.model,
        prepared.images,
        diameter=diameter,
        steps=config.steps,
        batch=config.batch,
        crop=config.crop,
        learning_rate=config.learning_rate,
        seed=config.seed,
        templates=prepared.templates,
        device=prepared.device,
    )
    if result.improved:
        save_model(
            job.out,
            result.model,
            pixel_size=initial.pixel_size,
            provenance={
                "trained_by": "streamdenoise train --init",
                "initial_model": str(initial.path),
                "initial_provenance": initial.provenance,
                "micrographs": [str(p) for p in job.micrographs],
                "objective": "blind-spot adaptation (noisy data only)",
                "guidance": prepared.templates is not None,
                "steps": config.steps,
                "particle_diameter_px": diameter,
                "held_out_criterion_input": result.criterion_input,
                "held_out_criterion_before": result.criterion_before,
                "held_out_criterion_after": result.criterion_after,
            },
        )
    return result


def describe(result: AdaptationResult) -> str:
    """The held-out criterion of an adaptation, of the model and of no denoising."""
    return (
        f"held-out picking criterion {result.criterion_after:.4f} (model "
        f"{result.criterion_before:.4f}, no denoising {result.criterion_input:.4f}; "
        f"a swap needs a gain above {result.margin:.3f})"
    )
