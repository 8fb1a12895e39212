"""Quality benchmark: the denoiser against the baselines a cryo-EM scientist compares with.

    python benchmarks/quality.py [--micrographs 4] [--topaz-python .venv-topaz/bin/python]

Simulated sessions of 3KPR (a structure the default model never saw) at 4 Å/px, 1024²
(a 4096² field binned ×4), at 40 and 15 e⁻/Å². Methods: raw; a Gaussian low-pass (σ chosen
per dose by the best particle-scale PSNR among 1–3 px, i.e. tuned on the truth, the
baseline's best case); Topaz-Denoise's pretrained `unet` (when --topaz-python is given);
faithful mode (the reference scheme, corrected; not a mode of the commands); live mode;
live mode after on-the-fly adaptation on the session; the same adaptation with target
guidance from the 3KPR reference. Metrics (METHOD §6) are means over micrographs. Writes
the "Quality" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from results import markdown_table, write_section
from structures import structure_paths

from streamdenoise.io import read_mrc, write_mrc_atomic
from streamdenoise.model.guidance import TemplateSpec, load_templates
from streamdenoise.model.inference import faithful_denoise
from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.model.pipeline import DenoiseSettings, denoise_image
from streamdenoise.model.training import adapt, prepare_image
from streamdenoise.physics.density import load_reference
from streamdenoise.physics.session import SessionSpec, micrograph_params
from streamdenoise.physics.simulator import simulate_micrograph
from streamdenoise.stats.filters import gaussian_blur, particle_scale
from streamdenoise.stats.ground_truth import (
    highpass_psnr,
    particle_snr_db,
    pick_and_score,
    psnr,
    ssim,
)
from streamdenoise.stats.guard import residual_structure_correlation
from streamdenoise.stats.measures import (
    background_flatness,
    low_frequency_fraction,
    particle_contrast,
    separability,
)

GAUSSIAN_SIGMAS = (1.0, 1.5, 2.0, 3.0)
COLUMNS = [
    "method",
    "PSNR dB",
    "SSIM",
    "HP-PSNR dB",
    "SNR dB",
    "LF power",
    "contrast/σ",
    "flatness",
    "CNR",
    "d′",
    "AUC",
    "precision",
    "recall",
    "F1",
    "AP",
    "residual r",
    "s / micrograph",
]


def metrics(image: np.ndarray, truth) -> dict[str, float]:
    """All METHOD §6 figures of one denoised (or raw) image against its ground truth."""
    diameter = truth.diameter / truth.params.pixel_size
    coordinates, clean, carbon = truth.coordinates, truth.clean, truth.carbon_mask
    picking = pick_and_score(image, coordinates, diameter)[1]
    separation = separability(image, coordinates, diameter, np.random.default_rng(0), carbon)
    noise = float(np.std(particle_scale(image, diameter)))
    return {
        "PSNR dB": psnr(image, clean),
        "SSIM": ssim(image, clean),
        "HP-PSNR dB": highpass_psnr(image, clean, diameter),
        "SNR dB": particle_snr_db(image, coordinates, diameter, carbon),
        "LF power": low_frequency_fraction(image, diameter),
        "contrast/σ": particle_contrast(image, coordinates, diameter) / max(noise, 1e-30),
        "flatness": background_flatness(image, coordinates, diameter),
        "CNR": separation.cnr,
        "d′": separation.d_prime,
        "AUC": separation.auc,
        "precision": picking.precision,
        "recall": picking.recall,
        "F1": picking.f1,
        "AP": picking.average_precision,
        # Residual (noisy − image) against the image's structure, high-passed at D/2.
        "residual r": residual_structure_correlation(truth.noisy, image, diameter),
    }


def topaz_denoise(images: list[np.ndarray], python: str) -> tuple[list[np.ndarray], float]:
    """Denoise with Topaz-Denoise's pretrained unet on CPU; (images, seconds per image)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "in").mkdir()
        paths = []
        for i, image in enumerate(images):
            paths.append(root / "in" / f"m{i:03d}.mrc")
            write_mrc_atomic(paths[-1], image, 4.0)
        start = time.perf_counter()
        subprocess.run(
            [
                python,
                "-m",
                "topaz.commands.denoise",
                "-d",
                "-1",
                "-m",
                "unet",
                "-o",
                str(root / "out"),
                *map(str, paths),
            ],
            check=True,
            capture_output=True,
        )
        elapsed = (time.perf_counter() - start) / len(images)
        return [read_mrc(root / "out" / p.name).data for p in paths], elapsed


def live(image: np.ndarray, model) -> np.ndarray:
    """Live mode exactly as `streamdenoise denoise` and the daemon run it (4 Å in, 4 Å out)."""
    return denoise_image(image, 4.0, model, 4.0, DenoiseSettings())[0].image


def tuned_gaussian(truths: list) -> tuple[float, Callable[[np.ndarray], np.ndarray]]:
    """The Gaussian-blur baseline with its σ (px) tuned on the ground truth: the σ of
    GAUSSIAN_SIGMAS with the best mean high-pass PSNR against the clean images; (σ, blur)."""
    best_sigma = max(
        GAUSSIAN_SIGMAS,
        key=lambda s: np.mean(
            [
                highpass_psnr(gaussian_blur(t.noisy, s), t.clean, t.diameter / t.params.pixel_size)
                for t in truths
            ]
        ),
    )
    return best_sigma, lambda image: gaussian_blur(image, best_sigma).astype(np.float32)


def held_out_micrographs(reference, dose: float, count: int) -> list:
    """The held-out simulated set at `dose` e⁻/Å²: `count` Falcon-4i micrographs of
    `reference`, 1 Å/px binned 4× to 4 Å/px (`simulate_micrograph` results, with truth);
    the same for every benchmark that judges models on it (a seed per dose)."""
    spec = SessionSpec(
        count=count,
        seed=1000 + int(dose),
        detector="falcon4i",
        pixel_size=1.0,
        binning=4,
        dose=dose,
    )
    return [simulate_micrograph(reference, micrograph_params(spec, i)) for i in range(count)]


def timed(function: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray]):
    """Apply `function` to each image; (outputs, mean seconds per image)."""
    outputs, start = [], time.perf_counter()
    for image in images:
        outputs.append(function(image))
    return outputs, (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micrographs", type=int, default=4, help="Per dose.")
    parser.add_argument("--doses", default="40,15", help="Comma-separated e⁻/Å².")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--topaz-python", default=None, help="Python of a topaz-em venv.")
    parser.add_argument("--adapt-steps", type=int, default=150)
    args = parser.parse_args()

    loaded = load_model(args.model or default_model_path())
    paths = structure_paths(["3kpr"])
    reference_name = "3KPR" if "3kpr" in paths else "built-in 6MSM (3KPR unavailable!)"
    reference = load_reference(paths.get("3kpr"))
    sections = []
    for dose in (float(d) for d in args.doses.split(",")):
        truths = held_out_micrographs(reference, dose, args.micrographs)
        noisy = [t.noisy for t in truths]
        outputs: dict[str, tuple[list[np.ndarray], float]] = {"raw": (noisy, 0.0)}
        best_sigma, blur = tuned_gaussian(truths)
        outputs[f"Gaussian σ={best_sigma:g} px (tuned)"] = timed(blur, noisy)
        if args.topaz_python:
            outputs["Topaz-Denoise unet"] = topaz_denoise(noisy, args.topaz_python)
        outputs["faithful (default model)"] = timed(
            lambda image: faithful_denoise(image, loaded.model).image, noisy
        )
        outputs["live (default model)"] = timed(lambda image: live(image, loaded.model), noisy)
        session = [prepare_image(n, 4.0, 4.0) for n in noisy]
        notes = []
        for label, templates in (
            ("live + adapted", None),
            (
                "live + adapted + guided",
                load_templates(reference, TemplateSpec(pixel_size=4.0, box=128)),
            ),
        ):
            start = time.perf_counter()
            result = adapt(
                loaded.model,
                session,
                diameter=truths[0].diameter / truths[0].params.pixel_size,
                steps=args.adapt_steps,
                crop=128,
                templates=templates,
            )
            adapt_seconds = time.perf_counter() - start
            chosen = result.model if result.improved else loaded.model
            notes.append(
                f"{label}: {args.adapt_steps} blind-spot steps in {adapt_seconds:.0f} s, "
                f"held-out criterion ρ {result.criterion_before:.4f} → "
                f"{result.criterion_after:.4f} (no denoising {result.criterion_input:.4f}) "
                f"({'swapped in' if result.improved else 'kept the resident model'})"
            )
            outputs[label] = timed(lambda image, m=chosen: live(image, m), noisy)
        outputs["clean image (ceiling)"] = ([t.clean for t in truths], 0.0)
        rows = []
        for label, (images, seconds) in outputs.items():
            values = [metrics(image, truth) for image, truth in zip(images, truths, strict=True)]
            means = {key: float(np.nanmean([v[key] for v in values])) for key in values[0]}
            rows.append([label] + [f"{means[c]:.3f}" for c in COLUMNS[1:-1]] + [f"{seconds:.2f}"])
            print(dose, rows[-1], flush=True)
        particles = int(np.mean([len(t.coordinates) for t in truths]))
        sections.append(
            f"### {dose:g} e⁻/Å², {args.micrographs} micrographs of 1024² at 4 Å/px "
            f"(~{particles} particles each, defocus 0.8–2.5 µm)\n\n"
            + markdown_table(COLUMNS, rows)
            + "\n\n"
            + "\n".join(f"- {n}" for n in notes)
        )
    body = (
        f"Reference {reference_name} (diameter {reference.diameter:.0f} Å), not used to train "
        f"the default model ({loaded.provenance.get('structures')}). PSNR/SSIM against the "
        "clean image after an affine intensity fit; HP-PSNR after removing a Gaussian low-pass "
        "(σ = D/2) from both; SNR dB as Topaz-Denoise defines it; LF power: fraction of power "
        "below 1/(2D); contrast/σ: particle-vs-background contrast over the image's "
        "particle-scale noise; flatness: std of the D/2-blurred background over the particle "
        "contrast (lower is flatter); CNR, d′, AUC of a fixed DoG detector at true centres vs "
        "background; precision/recall/F1 (at the best-F1 threshold) and AP of the built-in "
        "DoG picker, picks matched within 0.5·D; residual r: correlation of the residual "
        "(noisy − output) with the output, both high-passed at D/2 (the real-data benchmark's "
        "EPU figure). Times on this machine's CPU.\n\n" + "\n\n".join(sections)
    )
    write_section(
        "Quality",
        body,
        "python benchmarks/quality.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
    )


if __name__ == "__main__":
    main()
