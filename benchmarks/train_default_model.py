"""Train the default model shipped in the package (streamdenoise/data/default_model.pt).

    python benchmarks/train_default_model.py [--steps 3000] [--micrographs 240]
        [--base-channels 16] [--upsample highres|lowres] [--out PATH] [--resume]

A wide simulated prior, not one simulator's five proteins: every training micrograph
(768² at the working pixel size of 4 Å/px) draws
- its particles from real structures (CFTR 6MSM, 19HC, 1A28, 1BD2, 3PWP; 3KPR is kept out
  for the quality benchmark) or synthetic shapes (`streamdenoise.physics.shapes`: hollow
  shells, rings, rods and filament segments, random smooth complexes) of largest extent
  80–400 Å (log-uniform), at random densities, with aggregates, carbon edges, empty areas;
- a dose of 5–80 e⁻/Å² (log-uniform), defocus 0.5–3 µm, B-factor 50–250 Å² (the signal
  envelope of dose weighting), ice 200–700 Å;
- its noise (`streamdenoise.physics.noise`): Poisson counts, plus with probability ½ read
  and inelastic noise of 0–3× the shot noise's std, with probability ½ the low-pass
  correlation of motion correction's interpolation (4–40 frames), and always a random
  gain and offset (rescaled, not counts).
The network sees each micrograph divided by its noise std (`noise_unit_input`), so one
network serves every noise level: clean-target denoising score matching at unit noise
(METHOD §2, "learn the clean-data score where clean data exists"). Resumable from its
checkpoint; the training set is cached; the model file records all of the above.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from structures import structure_paths

from streamdenoise.model.guidance import cache_directory
from streamdenoise.model.modelfile import save_model
from streamdenoise.model.training import TrainConfig, TrainingImage, prepare_image, train
from streamdenoise.model.unet import ScoreUNet, UNetConfig
from streamdenoise.physics.density import load_reference, scatterers_from_map
from streamdenoise.physics.noise import add_read_noise, correlate, rescale
from streamdenoise.physics.shapes import SHAPES, random_shape
from streamdenoise.physics.simulator import MicrographParams, simulate_micrograph

TRAINING_STRUCTURES = ["6msm", "19hc", "1a28", "1bd2", "3pwp"]
WORKING_PIXEL_SIZE = 4.0
DEFAULT_BASE_CHANNELS = 16
SIZE = 768
DIAMETERS = (80.0, 400.0)  # Å, synthetic shapes
DOSES = (5.0, 80.0)  # e⁻/Å²
DEFOCUS = (0.5, 3.0)  # µm
B_FACTORS = (50.0, 250.0)  # Å²
ICE = (200.0, 700.0)  # Å
READ_NOISE = (0.0, 3.0)  # × the shot noise's std
FRAMES = (4, 40)
STRUCTURE_SHARE = 0.3


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def simulate_one(index: int, seed: int, structures: dict) -> tuple[TrainingImage, str]:
    """One training micrograph of the wide prior (module docstring): (image, description)."""
    rng = np.random.default_rng([seed, index])
    if structures and rng.random() < STRUCTURE_SHARE:
        name = str(rng.choice(sorted(structures)))
        scatterers = structures[name]
    else:
        name, volume = random_shape(_log_uniform(rng, DIAMETERS), WORKING_PIXEL_SIZE, rng)
        scatterers = scatterers_from_map(volume, WORKING_PIXEL_SIZE, name)
    diameter_px = scatterers.diameter / WORKING_PIXEL_SIZE
    capacity = (SIZE / diameter_px) ** 2
    defocus = rng.uniform(*DEFOCUS) * 1e4
    astigmatism = rng.uniform(0, 500)
    params = MicrographParams(
        shape=(SIZE, SIZE),
        pixel_size=WORKING_PIXEL_SIZE,
        detector_pixel_size=1.0,
        seed=int(rng.integers(2**31)),
        dose=_log_uniform(rng, DOSES),
        defocus_u=defocus + astigmatism / 2,
        defocus_v=defocus - astigmatism / 2,
        astigmatism_angle=float(rng.uniform(0, 180)),
        b_factor=float(rng.uniform(*B_FACTORS)),
        ice_thickness=float(rng.uniform(*ICE)),
        ice_gradient=float(rng.uniform(0.0, 0.4)),
        carbon_edge=float(rng.uniform(-0.45, -0.15)) if rng.random() < 0.2 else None,
        particles=max(1, round(capacity * rng.uniform(0.05, 0.8))),
        aggregate_fraction=float(rng.choice([0.0, 0.1, 0.3])),
        empty_fraction=float(rng.choice([0.0, 0.0, 0.3])),
    )
    sim = simulate_micrograph(scatterers, params)
    noisy, clean = sim.noisy, sim.clean
    notes = [name, f"{scatterers.diameter:.0f} Å", f"{params.dose:.0f} e/Å²"]
    if rng.random() < 0.5:
        factor = float(rng.uniform(*READ_NOISE))
        noisy, clean = add_read_noise(noisy, clean, factor, rng)
        notes.append(f"read noise ×{factor:.1f}")
    if rng.random() < 0.5:
        frames = int(rng.integers(FRAMES[0], FRAMES[1] + 1))
        noisy, clean = correlate(noisy, clean, frames, rng)
        notes.append(f"correlated ({frames} frames)")
    noisy, clean = rescale(noisy, clean, _log_uniform(rng, (0.01, 100.0)), rng.uniform(-50, 50))
    image = prepare_image(noisy, WORKING_PIXEL_SIZE, WORKING_PIXEL_SIZE, clean, noise_unit=True)
    return image, ", ".join(notes)


def simulate_training_set(count: int, seed: int) -> tuple[list, list, list[str]]:
    """The wide prior's (noisy, clean) pairs at 4 Å/px in unit-noise scaling: training
    images, validation images, and one description per image.

    Kept in the cache directory (one .npz per `count` and `seed`), so training several
    candidate networks on the same data simulates it once."""
    cached = cache_directory() / f"wide-prior-{count}-{seed}.npz"
    if cached.is_file():
        with np.load(cached) as stored:
            images = [
                TrainingImage(stored[f"noisy_{i}"], stored[f"clean_{i}"])
                for i in range(int(stored["count"]))
            ]
            notes = [str(note) for note in stored["notes"]]
        return *split_validation(images), notes
    paths = structure_paths(TRAINING_STRUCTURES)
    structures = {name: load_reference(path) for name, path in paths.items()}
    images, notes = [], []
    with Progress(
        TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    ) as progress:  # fmt: skip
        task = progress.add_task("simulate", total=count)
        for index in range(count):
            image, note = simulate_one(index, seed, structures)
            images.append(image)
            notes.append(note)
            progress.advance(task)
    arrays = {f"noisy_{i}": image.noisy for i, image in enumerate(images)}
    arrays |= {f"clean_{i}": image.clean for i, image in enumerate(images)}
    partial = cached.with_name(f".{cached.stem}.partial.npz")
    np.savez(partial, count=len(images), notes=np.array(notes), **arrays)
    partial.replace(cached)
    return *split_validation(images), notes


def split_validation(images: list[TrainingImage]) -> tuple[list, list]:
    """(training, validation): every len/8-th image, eight in all, held out."""
    validation = images[:: max(len(images) // 8, 1)][:8]
    training = [image for image in images if not any(image is v for v in validation)]
    return training, validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--base-channels",
        type=int,
        default=DEFAULT_BASE_CHANNELS,
        help="Channels of the first U-Net level (levels ×1, ×2, ×4).",
    )
    parser.add_argument(
        "--upsample",
        choices=["highres", "lowres"],
        default="highres",
        help="Upsampling convolution at the fine (default) or the coarse resolution.",
    )
    parser.add_argument("--micrographs", type=int, default=240, help="Training set size.")
    parser.add_argument("--out", type=Path, default=Path("streamdenoise/data/default_model.pt"))
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/default_model.ckpt"))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    training, validation, notes = simulate_training_set(args.micrographs, args.seed)
    simulated = time.perf_counter() - start
    print(
        f"simulated {len(training)} training + {len(validation)} validation micrographs "
        f"in {simulated:.0f} s",
        flush=True,
    )
    model = ScoreUNet(
        UNetConfig(
            base_channels=args.base_channels,
            channel_multipliers=(1, 2, 4),
            norm_groups=0,
            upsample=args.upsample,
            noise_unit_input=True,
        )
    )
    config = TrainConfig(
        steps=args.steps,
        batch=8,
        crop=128,
        learning_rate=1e-3,
        seed=args.seed,
        validation_every=100,
        checkpoint_every=100,
    )
    args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with Progress(
        TextColumn("training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f} val {task.fields[val]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("train", total=args.steps, loss=1.0, val="-")

        def report(step: int, loss: float, validation_loss: float | None) -> None:
            fields = {"loss": loss}
            if validation_loss is not None:
                fields["val"] = f"{validation_loss:.4f}"
            progress.update(task, completed=step, **fields)

        state = train(
            model,
            training,
            config,
            validation=validation,
            checkpoint=args.checkpoint,
            resume=args.resume,
            on_step=report,
        )
    elapsed = time.perf_counter() - start
    save_model(
        args.out,
        model,
        pixel_size=WORKING_PIXEL_SIZE,
        provenance={
            "trained_by": "benchmarks/train_default_model.py",
            "objective": "clean-target denoising score matching at unit noise on "
            "simulated pairs (a wide prior)",
            "structures": TRAINING_STRUCTURES,
            "structure_share": STRUCTURE_SHARE,
            "shapes": sorted(SHAPES),
            "shape_diameters_A": list(DIAMETERS),
            "doses_e_per_A2": list(DOSES),
            "defocus_um": list(DEFOCUS),
            "b_factors_A2": list(B_FACTORS),
            "ice_thickness_A": list(ICE),
            "noise": "Poisson counts; read/inelastic noise 0-3x shot noise std (p 0.5); "
            "motion-correction interpolation correlation, 4-40 frames (p 0.5); random gain "
            "and offset",
            "micrograph_size": SIZE,
            "micrographs": len(training),
            "micrograph_notes": notes,
            "steps": state.step,
            "crop": config.crop,
            "batch": config.batch,
            "guidance": False,
            "seed": args.seed,
            "validation_history": state.history,
            "wall_seconds": round(elapsed),
        },
    )
    print(
        f"wrote {args.out} after {state.step} steps; total {elapsed / 60:.1f} min "
        f"(simulation {simulated:.0f} s); final validation loss "
        f"{state.history[-1]['validation_loss']:.4f}"
    )


if __name__ == "__main__":
    main()
