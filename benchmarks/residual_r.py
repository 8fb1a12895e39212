"""Does the residual–structure correlation r measure harm? Checked against the truth.

    python benchmarks/residual_r.py [--micrographs 2] [--epu EPU_DIR]

Issue 11 reads r (the residual y − x̂ against the output x̂, both high-passed at D/2,
`stats.guard.residual_structure_correlation`) as "the denoiser removes signal" and asks
for an r on the EPU micrographs no higher than a Gaussian blur's. Here r is set beside
what it is meant to stand for, on the quality benchmark's held-out simulated micrographs
(3KPR, which the default model never saw; `quality.held_out_micrographs`), whose clean
images are known: the correlation of the output's particle-scale structure with the clean
image's (both high-passed at D/2: 1 keeps all of it, 0 none) and HP-PSNR. Methods: the
default model in live mode (guard off, as the EPU rows' model passed the guard), Gaussian
blurs of 1.5, 2.5 and 4 px, and the per-micrograph Wiener filter from the fitted noise
spectrum (`real_data_probes.wiener`) at full and half strength (half the noise power
removed per ring), and ideal (brick-wall) low-passes at 20 and 60 Å, which share no
frequency between residual and output and so read r ≈ 0 however much they remove. With
--epu, r of the same methods on the two EPU micrographs (no truth), and the share of each
output's 64 Å blocks left flatter than half the median block (`flat_share`).
Writes the "Residual–structure r against the truth" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from quality import held_out_micrographs
from real_data import EPU_DIAMETER, binned, load_epu, rank_correlation
from real_data_probes import wiener
from results import markdown_table, write_section
from structures import structure_paths

from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.model.pipeline import DenoiseSettings, denoise_image
from streamdenoise.physics.density import load_reference
from streamdenoise.stats.filters import gaussian_blur, particle_scale
from streamdenoise.stats.ground_truth import highpass_psnr
from streamdenoise.stats.guard import residual_structure_correlation
from streamdenoise.stats.noise import NoiseSpectrum, estimate_noise_spectrum

WORKING = 4.0
"""Å/px of every image judged here (the default model's)."""
IDEAL_CUTOFFS = (20.0, 60.0)
"""Cut-offs (Å) of the brick-wall low-passes: one that keeps the particles' shape, one
that leaves blobs (a 150 Å particle is 2.5 cut-offs across)."""
FLAT_BLOCK = 16
"""Side (px at `WORKING`, 64 Å) of the blocks of `flat_share`."""


def half_wiener(image: np.ndarray, noise: NoiseSpectrum) -> np.ndarray:
    """`wiener` with half the fitted noise power: a weaker shrinkage of every ring."""
    return wiener(image, noise.scaled(math.sqrt(0.5)))


def ideal_low_pass(image: np.ndarray, cutoff: float) -> np.ndarray:
    """(H, W) image with every spatial frequency above 1/`cutoff` (cutoff in pixels)
    removed and every one below kept whole: a brick-wall filter, whose residual and
    output share no frequency."""
    spectrum = np.fft.rfft2(np.asarray(image, dtype=np.float64))
    radius = np.hypot(
        np.fft.fftfreq(image.shape[0])[:, None], np.fft.rfftfreq(image.shape[1])[None, :]
    )
    return np.fft.irfft2(spectrum * (radius <= 1 / cutoff), s=image.shape).astype(np.float32)


def methods(model) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Label → denoiser of an (H, W) image at `WORKING` Å/px."""
    settings = DenoiseSettings(guard=False)

    def live(image: np.ndarray) -> np.ndarray:
        return denoise_image(image, WORKING, model, WORKING, settings)[0].image

    chosen: dict[str, Callable[[np.ndarray], np.ndarray]] = {"default model, live": live}
    for sigma in (1.5, 2.5, 4.0):
        chosen[f"Gaussian σ = {sigma:g} px"] = lambda y, s=sigma: gaussian_blur(y, s)
    chosen["Wiener, fitted noise"] = lambda y: wiener(y, estimate_noise_spectrum(y))
    chosen["Wiener, half the noise"] = lambda y: half_wiener(y, estimate_noise_spectrum(y))
    for cutoff in IDEAL_CUTOFFS:
        chosen[f"ideal low-pass {cutoff:g} Å"] = lambda y, c=cutoff: ideal_low_pass(y, c / WORKING)
    return chosen


def structure_kept(output: np.ndarray, clean: np.ndarray, diameter: float) -> float:
    """Correlation of the output's particle-scale structure with the clean image's."""
    a, b = particle_scale(output, diameter).ravel(), particle_scale(clean, diameter).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def simulated_rows(model, count: int) -> tuple[list[list[str]], list[str]]:
    """Table rows per dose and method, and per dose a line with Spearman's rank
    correlation of r with the structure kept over the methods."""
    reference = load_reference(structure_paths(["3kpr"]).get("3kpr"))
    rows, agreement = [], []
    for dose in (40.0, 15.0):
        truths = held_out_micrographs(reference, dose, count)
        r_means, kept_means = [], []
        for label, denoise in methods(model).items():
            r, kept, hp_psnr = [], [], []
            for truth in truths:
                diameter = truth.diameter / truth.params.pixel_size
                output = denoise(truth.noisy)
                r.append(residual_structure_correlation(truth.noisy, output, diameter))
                kept.append(structure_kept(output, truth.clean, diameter))
                hp_psnr.append(highpass_psnr(output, truth.clean, diameter))
            r_means.append(np.mean(r))
            kept_means.append(np.mean(kept))
            rows.append(
                [
                    f"{dose:g}",
                    label,
                    f"{r_means[-1]:.3f}",
                    f"{kept_means[-1]:.3f}",
                    f"{np.mean(hp_psnr):.2f}",
                ]
            )
        raw_kept = np.mean(
            [structure_kept(t.noisy, t.clean, t.diameter / t.params.pixel_size) for t in truths]
        )
        rows.append([f"{dose:g}", "raw (no denoising)", "–", f"{raw_kept:.3f}", "–"])
        spearman = rank_correlation(np.array(r_means), np.array(kept_means))
        agreement.append(
            f"- {dose:g} e⁻/Å²: Spearman's rank correlation of r with the structure kept, over "
            f"the {len(r_means)} methods: {spearman:+.2f} (+1: the higher r, the more of the "
            "clean structure the output keeps)."
        )
        print(f"{dose:g} e⁻/Å² done", flush=True)
    return rows, agreement


def flat_share(image: np.ndarray, block: int = FLAT_BLOCK, below: float = 0.5) -> float:
    """Share of the (H, W) image's `block`² px blocks whose std is under `below` × the
    median block's: the patches a denoiser made flatter than the rest of the field."""
    rows, columns = (side // block * block for side in image.shape)
    tiles = np.asarray(image[:rows, :columns], dtype=np.float64)
    spread = tiles.reshape(rows // block, block, columns // block, block).std(axis=(1, 3))
    return float(np.mean(spread < below * np.median(spread)))


def epu_rows(model, folder: Path) -> list[list[str]]:
    """Per EPU micrograph in `folder` and method: r and the flat share (no truth)."""
    rows = []
    for micrograph in load_epu(folder):
        image = binned(micrograph, WORKING)
        rows.append([micrograph.name, "raw", "–", f"{flat_share(image):.3f}"])
        for label, denoise in methods(model).items():
            output = denoise(image)
            r = residual_structure_correlation(image, output, EPU_DIAMETER / WORKING)
            rows.append([micrograph.name, label, f"{r:.3f}", f"{flat_share(output):.3f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micrographs", type=int, default=2, help="Per dose.")
    parser.add_argument("--epu", type=Path, default=None, help="Folder of the EPU MRCs.")
    args = parser.parse_args()
    model = load_model(default_model_path()).model
    rows, agreement = simulated_rows(model, args.micrographs)
    body = (
        "Held-out simulated 3KPR micrographs (1024² at 4 Å/px, "
        f"{args.micrographs} per dose), D = the structure's diameter; r: residual against "
        "output, both high-passed at D/2 (the EPU figure of issue 11); structure kept: "
        "correlation of the output's high-passed image with the clean one's; HP-PSNR "
        "against the clean image (dB).\n\n"
        + markdown_table(["e⁻/Å²", "method", "r", "structure kept", "HP-PSNR"], rows)
        + "\n\n"
        + "\n".join(agreement)
        + "\n"
    )
    if args.epu:
        body += (
            f"\n### EPU micrographs (no truth; {WORKING:g} Å/px, D = {EPU_DIAMETER:g} Å)\n\n"
            + "flat: the share of 64 Å blocks whose std is under half the median block's "
            "(ice smoothed flatter than the rest of the field).\n\n"
            + markdown_table(["micrograph", "method", "r", "flat"], epu_rows(model, args.epu))
            + "\n"
        )
    print(body)
    write_section("Residual–structure r against the truth", body)


if __name__ == "__main__":
    main()
