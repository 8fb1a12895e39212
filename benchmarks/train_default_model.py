"""Train the default model shipped in the package (streamdenoise/data/default_model.pt).

    python benchmarks/train_default_model.py [--steps 3000] [--base-channels 16]
        [--upsample highres|lowres] [--out PATH] [--resume]

Simulates sessions from five real structures (CFTR 6MSM, 19HC, 1A28, 1BD2, 3PWP; 3KPR is
kept out for the quality benchmark) at doses 15–60 e⁻/Å² and defoci 0.8–2.5 µm, at the
working pixel size of 4 Å/px, then trains the score U-Net with the clean-target
denoising score-matching loss (METHOD §2, "learn the clean-data score where clean data
exists"). Resumable from its checkpoint; prints how long it took. Fits in well under an
hour on a 2-core CPU.
"""

from __future__ import annotations

import argparse
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
from streamdenoise.physics.density import load_reference
from streamdenoise.physics.session import SessionSpec, micrograph_params
from streamdenoise.physics.simulator import simulate_micrograph

TRAINING_STRUCTURES = ["6msm", "19hc", "1a28", "1bd2", "3pwp"]
WORKING_PIXEL_SIZE = 4.0
DEFAULT_BASE_CHANNELS = 16
DOSES = (15.0, 25.0, 40.0, 60.0)


def simulate_training_set(per_structure: int, seed: int) -> tuple[list, list, list[str]]:
    """Simulated (noisy, clean) pairs at 4 Å/px: training images, validation, sources.

    Kept in the cache directory (one .npz per `per_structure` and `seed`), so training
    several candidate networks on the same data simulates it once."""
    cached = cache_directory() / f"training-set-{per_structure}-{seed}.npz"
    if cached.is_file():
        with np.load(cached) as stored:
            images = [
                TrainingImage(stored[f"noisy_{i}"], stored[f"clean_{i}"])
                for i in range(int(stored["count"]))
            ]
            sources = [str(name) for name in stored["sources"]]
        return *split_validation(images), sources
    paths = structure_paths(TRAINING_STRUCTURES)
    references = [load_reference(paths[name]) if name in paths else None for name in paths]
    images = []
    sources = []
    for r, (name, reference) in enumerate(zip(paths, references, strict=True)):
        sources.append(name)
        for dose_index, dose in enumerate(DOSES):
            spec = SessionSpec(
                count=per_structure,
                seed=seed + 100 * r + dose_index,
                detector="falcon4i",
                pixel_size=1.0,
                binning=4,
                dose=dose,
                carbon_edge_fraction=0.25,
                aggregate_fraction=0.1,
            )
            for index in range(per_structure):
                params = micrograph_params(spec, index)
                sim = simulate_micrograph(reference, params)
                images.append(
                    prepare_image(sim.noisy, params.pixel_size, WORKING_PIXEL_SIZE, sim.clean)
                )
    arrays = {f"noisy_{i}": image.noisy for i, image in enumerate(images)}
    arrays |= {f"clean_{i}": image.clean for i, image in enumerate(images)}
    partial = cached.with_name(f".{cached.stem}.partial.npz")
    np.savez(partial, count=len(images), sources=np.array(sources), **arrays)
    partial.replace(cached)
    return *split_validation(images), sources


def split_validation(images: list[TrainingImage]) -> tuple[list, list]:
    """(training, validation): every len/4-th image, four in all, held out."""
    validation = images[:: max(len(images) // 4, 1)][:4]
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
    parser.add_argument(
        "--per-structure", type=int, default=2, help="Micrographs per dose per structure."
    )
    parser.add_argument("--out", type=Path, default=Path("streamdenoise/data/default_model.pt"))
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/default_model.ckpt"))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    training, validation, sources = simulate_training_set(args.per_structure, args.seed)
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
            "objective": "clean-target denoising score matching on simulated pairs",
            "structures": sources,
            "doses_e_per_A2": list(DOSES),
            "defocus_um": [0.8, 2.5],
            "micrographs": len(training),
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
