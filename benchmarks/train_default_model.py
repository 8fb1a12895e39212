"""Train the default model shipped in the package (streamdenoise/data/default_model.pt).

    python benchmarks/train_default_model.py [--prior structures|wide] [--steps 3000]
        [--base-channels 16] [--upsample highres|lowres] [--out PATH] [--resume]
        wide only: [--micrographs 240] [--structure-share 0.3] [--doses 5 80]
                   [--read-noise 3]

Two simulated priors, both trained with clean-target denoising score matching (METHOD §2,
"learn the clean-data score where clean data exists"):

- `structures` (the shipped model): five real structures (CFTR 6MSM, 19HC, 1A28, 1BD2,
  3PWP; 3KPR is kept out for the quality benchmark) at doses 15–60 e⁻/Å², defocus
  0.8–2.5 µm, 1024² at 4 Å/px (4096² at 1 Å/px binned), Poisson counts; the network sees
  each micrograph normalised by its own std.
- `wide` (measured, not shipped: benchmarks/RESULTS.md "Real data"): every micrograph
  (768² at 4 Å/px) draws its particles from those structures or synthetic shapes
  (`streamdenoise.physics.shapes`: hollow shells, rings, rods and filament segments,
  random smooth complexes) of 80–400 Å (log-uniform), random densities, aggregates, carbon
  edges, empty areas; a dose of 5–80 e⁻/Å², defocus 0.5–3 µm, B-factor 50–250 Å² (the
  signal envelope of dose weighting), ice 200–700 Å; and its noise
  (`streamdenoise.physics.noise`): Poisson counts, with probability ½ read/inelastic noise
  up to 3× the shot noise's std, with probability ½ the low-pass correlation of motion
  correction's interpolation (4–40 frames), always a random gain and offset. The network
  sees each micrograph divided by its noise std (`noise_unit_input`), so one network
  serves every noise level.

Training sets are cached; training resumes from its checkpoint; the model file records
the recipe.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
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
from streamdenoise.physics.session import SessionSpec, micrograph_params
from streamdenoise.physics.shapes import SHAPES, random_shape
from streamdenoise.physics.simulator import MicrographParams, simulate_micrograph

TRAINING_STRUCTURES = ["6msm", "19hc", "1a28", "1bd2", "3pwp"]
STRUCTURE_DOSES = (15.0, 25.0, 40.0, 60.0)  # e⁻/Å², the `structures` prior
PER_STRUCTURE = 2  # micrographs per dose and structure
WORKING_PIXEL_SIZE = 4.0
DEFAULT_BASE_CHANNELS = 16
SIZE = 768
DIAMETERS = (80.0, 400.0)  # Å, synthetic shapes
DOSES = (5.0, 80.0)  # e⁻/Å²
DEFOCUS = (0.5, 3.0)  # µm
B_FACTORS = (50.0, 250.0)  # Å²
ICE = (200.0, 700.0)  # Å
MAX_READ_NOISE = 3.0  # × the shot noise's std
FRAMES = (4, 40)
STRUCTURE_SHARE = 0.3


@dataclass(frozen=True)
class WidePrior:
    """The knobs of the wide prior: share of real structures, dose range (e⁻/Å²) and the
    largest read/inelastic noise (× the shot noise's std)."""

    structure_share: float = STRUCTURE_SHARE
    doses: tuple[float, float] = DOSES
    read_noise: float = MAX_READ_NOISE

    @property
    def key(self) -> str:
        """Short text for cache file names."""
        return (
            f"s{self.structure_share:g}-d{self.doses[0]:g}-{self.doses[1]:g}-r{self.read_noise:g}"
        )


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def simulate_one(
    index: int, seed: int, structures: dict, prior: WidePrior
) -> tuple[TrainingImage, str]:
    """One training micrograph of the wide prior (module docstring): (image, description)."""
    rng = np.random.default_rng([seed, index])
    if structures and rng.random() < prior.structure_share:
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
        dose=_log_uniform(rng, prior.doses),
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
        factor = float(rng.uniform(0.0, prior.read_noise))
        noisy, clean = add_read_noise(noisy, clean, factor, rng)
        notes.append(f"read noise ×{factor:.1f}")
    if rng.random() < 0.5:
        frames = int(rng.integers(FRAMES[0], FRAMES[1] + 1))
        noisy, clean = correlate(noisy, clean, frames, rng)
        notes.append(f"correlated ({frames} frames)")
    noisy, clean = rescale(noisy, clean, _log_uniform(rng, (0.01, 100.0)), rng.uniform(-50, 50))
    image = prepare_image(noisy, WORKING_PIXEL_SIZE, WORKING_PIXEL_SIZE, clean, noise_unit=True)
    return image, ", ".join(notes)


def cached_set(name: str, build) -> tuple[list[TrainingImage], list[str]]:
    """Training pairs and one note each, from the cache directory's `name`.npz, or built by
    `build()` and stored there (several candidate networks share one simulation)."""
    cached = cache_directory() / f"{name}.npz"
    if cached.is_file():
        with np.load(cached) as stored:
            images = [
                TrainingImage(stored[f"noisy_{i}"], stored[f"clean_{i}"])
                for i in range(int(stored["count"]))
            ]
            return images, [str(note) for note in stored["notes"]]
    images, notes = build()
    arrays = {f"noisy_{i}": image.noisy for i, image in enumerate(images)}
    arrays |= {f"clean_{i}": image.clean for i, image in enumerate(images)}
    partial = cached.with_name(f".{cached.stem}.partial.npz")
    np.savez(partial, count=len(images), notes=np.array(notes), **arrays)
    partial.replace(cached)
    return images, notes


def structures_set(seed: int) -> tuple[list[TrainingImage], list[str]]:
    """The `structures` prior (module docstring): pairs normalised by the image's std."""

    def build() -> tuple[list[TrainingImage], list[str]]:
        paths = structure_paths(TRAINING_STRUCTURES)
        images, notes = [], []
        for r, (name, path) in enumerate(paths.items()):
            reference = load_reference(path)
            for dose_index, dose in enumerate(STRUCTURE_DOSES):
                spec = SessionSpec(
                    count=PER_STRUCTURE,
                    seed=seed + 100 * r + dose_index,
                    detector="falcon4i",
                    pixel_size=1.0,
                    binning=4,
                    dose=dose,
                    carbon_edge_fraction=0.25,
                    aggregate_fraction=0.1,
                )
                for index in range(PER_STRUCTURE):
                    params = micrograph_params(spec, index)
                    sim = simulate_micrograph(reference, params)
                    images.append(
                        prepare_image(sim.noisy, params.pixel_size, WORKING_PIXEL_SIZE, sim.clean)
                    )
                    notes.append(f"{name}, {dose:g} e/Å²")
        return images, notes

    return cached_set(f"structures-{PER_STRUCTURE}-{seed}", build)


def wide_set(count: int, seed: int, prior: WidePrior) -> tuple[list[TrainingImage], list[str]]:
    """The `wide` prior's pairs in unit-noise scaling (module docstring)."""

    def build() -> tuple[list[TrainingImage], list[str]]:
        paths = structure_paths(TRAINING_STRUCTURES)
        structures = {name: load_reference(path) for name, path in paths.items()}
        images, notes = [], []
        with Progress(
            TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), TimeRemainingColumn(),
        ) as progress:  # fmt: skip
            task = progress.add_task("simulate", total=count)
            for index in range(count):
                image, note = simulate_one(index, seed, structures, prior)
                images.append(image)
                notes.append(note)
                progress.advance(task)
        return images, notes

    return cached_set(f"wide-prior-{prior.key}-{count}-{seed}", build)


def split_validation(images: list[TrainingImage], count: int) -> tuple[list, list]:
    """(training, validation): `count` images, evenly spread, held out."""
    validation = images[:: max(len(images) // count, 1)][:count]
    training = [image for image in images if not any(image is v for v in validation)]
    return training, validation


def structures_recipe() -> dict:
    """What the `structures` prior is, for the model file."""
    return {
        "objective": "clean-target denoising score matching on simulated pairs",
        "structures": TRAINING_STRUCTURES,
        "doses_e_per_A2": list(STRUCTURE_DOSES),
        "defocus_um": [0.8, 2.5],
        "noise": "Poisson counts",
        "micrograph_size": 1024,
    }


def wide_recipe(prior: WidePrior) -> dict:
    """What the `wide` prior is, for the model file."""
    return {
        "objective": "clean-target denoising score matching at unit noise on simulated "
        "pairs (a wide prior)",
        "structures": TRAINING_STRUCTURES,
        "structure_share": prior.structure_share,
        "shapes": sorted(SHAPES),
        "shape_diameters_A": list(DIAMETERS),
        "doses_e_per_A2": list(prior.doses),
        "defocus_um": list(DEFOCUS),
        "b_factors_A2": list(B_FACTORS),
        "ice_thickness_A": list(ICE),
        "noise": f"Poisson counts; read/inelastic noise 0-{prior.read_noise:g}x shot noise "
        "std (p 0.5); motion-correction interpolation correlation, 4-40 frames (p 0.5); "
        "random gain and offset",
        "micrograph_size": SIZE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prior",
        choices=["structures", "wide"],
        default="structures",
        help="structures: the shipped model's recipe; wide: the wide prior (docstring).",
    )
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
    parser.add_argument("--structure-share", type=float, default=STRUCTURE_SHARE)
    parser.add_argument("--doses", type=float, nargs=2, default=DOSES, metavar=("MIN", "MAX"))
    parser.add_argument(
        "--read-noise", type=float, default=MAX_READ_NOISE, help="Largest × shot-noise std."
    )
    parser.add_argument("--out", type=Path, default=Path("streamdenoise/data/default_model.pt"))
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/default_model.ckpt"))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    wide = args.prior == "wide"
    prior = WidePrior(args.structure_share, tuple(args.doses), args.read_noise)
    images, notes = (
        wide_set(args.micrographs, args.seed, prior) if wide else structures_set(args.seed)
    )
    training, validation = split_validation(images, 8 if wide else 4)
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
            noise_unit_input=wide,
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
            "prior": args.prior,
            **(wide_recipe(prior) if wide else structures_recipe()),
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
