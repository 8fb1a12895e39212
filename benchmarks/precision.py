"""The network in float32 against bfloat16: the same micrographs, quality and speed.

    python benchmarks/precision.py [--apoferritin '<AutoCryoPicker>/cryo-EM Dataset']
                                   [--micrographs 4] [--device cpu]

`precision = "auto"` runs the network in bfloat16 where the device computes it natively
(`streamdenoise.engine.batches.network_dtype`). This benchmark says what that costs in
picture and picking quality and what it gains in time, with the shipped default model in
live mode exactly as `streamdenoise denoise` runs it (guard on):

- the held-out simulated sets of "Quality" (3KPR, not used in training; 40 and 15 e⁻/Å²,
  `--micrographs` each): PSNR against the clean image and the project picker's AP and F1;
- with `--apoferritin`, both real apoferritin sets of "Real data" (19 micrographs each,
  hand-labelled): the LoG and DoG pickers' AP;
- on every micrograph, how far the bfloat16 output is from the float32 one, relative to
  the correction the model makes (‖x̂_bf16 − x̂_fp32‖ / ‖x̂_fp32 − y‖, guard off, so that a
  micrograph where the guard keeps the input still counts), and the guard's fallbacks;
- seconds per micrograph of the whole denoising (noise estimate … guard).

On a device without native bfloat16 it is emulated (slow); the figures still hold.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from quality import held_out_micrographs, metrics
from real_data import (
    APOFERRITIN_DIAMETER,
    APOFERRITIN_SETS,
    DEFAULT_TRUTH,
    load_apoferritin,
    picking_metrics,
)
from results import markdown_table, write_section
from structures import structure_paths

from streamdenoise.engine.batches import native_bfloat16, network_dtype, prepare_model
from streamdenoise.engine.device import resolve_device
from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.model.pipeline import DenoiseSettings, denoise_image, prepare
from streamdenoise.physics.density import load_reference

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DOSES = (40.0, 15.0)


def relative_change(reduced: np.ndarray, full: np.ndarray, raw: np.ndarray) -> float:
    """‖reduced − full‖ / ‖full − raw‖: the bfloat16 output's distance from the float32
    one in units of the correction the model made (all (H, W), same pixels)."""
    return float(np.linalg.norm(reduced - full) / max(np.linalg.norm(full - raw), 1e-30))


class Denoiser:
    """The default model on `device`; `run(image, pixel Å/px, precision, guard)` → the
    denoised image at the model's pixel size, whether the guard kept the input, seconds."""

    def __init__(self, device: torch.device) -> None:
        self.loaded = load_model(default_model_path(), device)
        self.model = prepare_model(self.loaded.model, device, compile_model=False)

    def binned(self, image: np.ndarray, pixel_size: float) -> np.ndarray:
        """The micrograph at the model's pixel size, as the pipeline bins it."""
        return prepare(image, pixel_size, self.loaded.pixel_size, DenoiseSettings()).image

    def run(
        self, image: np.ndarray, pixel_size: float, precision: str, guard: bool = True
    ) -> tuple[np.ndarray, bool, float]:
        settings = DenoiseSettings(dtype=PRECISIONS[precision], guard=guard)
        start = time.perf_counter()
        denoised, _ = denoise_image(image, pixel_size, self.model, self.loaded.pixel_size, settings)
        seconds = time.perf_counter() - start
        fallback = bool(denoised.guard and not denoised.guard.passed)
        return denoised.image, fallback, seconds


def compare(
    denoiser: Denoiser,
    images: list[tuple[np.ndarray, float]],
    score: Callable[[int, np.ndarray], dict[str, float]],
    columns: tuple[str, ...],
) -> tuple[list[list[str]], list[float]]:
    """Both precisions on `images` [(image, Å/px)]: table rows (precision, the mean of each
    of `columns` from `score(index, output)`, guard fallbacks, s/micrograph) and the
    relative change of each micrograph's bfloat16 output (guard off)."""
    rows, changes = [], []
    for precision in PRECISIONS:
        scores, fallbacks, seconds = [], 0, []
        for index, (image, pixel) in enumerate(images):
            denoiser.run(image, pixel, precision)  # warm caches: time the second run
            output, fallback, took = denoiser.run(image, pixel, precision)
            scores.append(score(index, output))
            fallbacks += fallback
            seconds.append(took)
        means = [f"{np.mean([s[c] for s in scores]):.3f}" for c in columns]
        rows.append([precision, *means, f"{fallbacks}/{len(images)}", f"{np.median(seconds):.2f}"])
    for image, pixel in images:
        full = denoiser.run(image, pixel, "float32", guard=False)[0]
        reduced = denoiser.run(image, pixel, "bfloat16", guard=False)[0]
        changes.append(relative_change(reduced, full, denoiser.binned(image, pixel)))
    return rows, changes


def change_line(changes: list[float]) -> str:
    """The relative changes as median and largest, in percent."""
    return (
        f"bfloat16 output against float32's, relative to the model's correction (guard "
        f"off): median {100 * np.median(changes):.2f} %, largest {100 * np.max(changes):.2f} %"
    )


def simulated_section(denoiser: Denoiser, count: int) -> str:
    """The held-out simulated sets of "Quality", both precisions."""
    paths = structure_paths(["3kpr"])
    reference = load_reference(paths.get("3kpr"))
    name = "3KPR" if "3kpr" in paths else "built-in 6MSM (3KPR unavailable!)"
    parts = []
    for dose in DOSES:
        truths = held_out_micrographs(reference, dose, count)
        images = [(t.noisy, t.params.pixel_size) for t in truths]
        print(f"simulated {dose:g} e⁻/Å²: {len(images)} micrographs", flush=True)
        columns = ("PSNR dB", "F1", "AP")
        rows, changes = compare(
            denoiser, images, lambda i, out, truths=truths: metrics(out, truths[i]), columns
        )
        parts.append(
            f'### Simulated {name}, {dose:g} e⁻/Å², {len(images)} micrographs ("Quality")\n\n'
            + markdown_table(["precision", *columns, "guard fallbacks", "s / micrograph"], rows)
            + f"\n\n{change_line(changes)}.\n"
        )
    return "\n".join(parts)


def apoferritin_section(denoiser: Denoiser, folder: Path) -> str:
    """Both real apoferritin sets of "Real data", both precisions."""
    working = denoiser.loaded.pixel_size
    diameter = APOFERRITIN_DIAMETER / working
    parts = []
    for which, (subfolder, _) in APOFERRITIN_SETS.items():
        micrographs = load_apoferritin(folder, DEFAULT_TRUTH, 19, which)
        images = [(m.image, m.pixel_size) for m in micrographs]
        print(f"apoferritin ({which}): {len(images)} micrographs", flush=True)

        def score(index: int, out: np.ndarray, micrographs=micrographs) -> dict[str, float]:
            m = micrographs[index]
            return picking_metrics(out, m.truth * out.shape[1] / m.image.shape[1], diameter)

        columns = ("LoG AP", "DoG AP")
        rows, changes = compare(denoiser, images, score, columns)
        parts.append(
            f'### Apoferritin `{subfolder}`, {len(images)} micrographs ("Real data")\n\n'
            + markdown_table(["precision", *columns, "guard fallbacks", "s / micrograph"], rows)
            + f"\n\n{change_line(changes)}.\n"
        )
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micrographs", type=int, default=4, help="Per simulated dose.")
    parser.add_argument("--apoferritin", type=Path, default=None, help="AutoCryoPicker data.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="Leave RESULTS.md as it is.")
    args = parser.parse_args()
    device = resolve_device(args.device)
    denoiser = Denoiser(device)
    start = time.perf_counter()
    sections = [simulated_section(denoiser, args.micrographs)]
    if args.apoferritin:
        sections.append(apoferritin_section(denoiser, args.apoferritin))
    default = str(network_dtype(device)).removeprefix("torch.")
    native = "natively" if native_bfloat16(device) else "emulated (no native support)"
    body = (
        f"The shipped default model in live mode on {device} (bfloat16 {native}; "
        f'`precision = "auto"` runs {default} here), guard on unless said, the second of two '
        f"runs timed. Wall time {time.perf_counter() - start:.0f} s.\n\n" + "\n".join(sections)
    )
    print(body)
    if not args.no_write:
        write_section("Precision", body)


if __name__ == "__main__":
    main()
