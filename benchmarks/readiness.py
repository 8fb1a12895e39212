"""Picking-readiness benchmark: do the live statistics tell good micrographs from bad ones?

    python benchmarks/readiness.py [--micrographs 50] [--per-class 10] [--classes good,empty]

Simulated 1024² micrographs at 4 Å/px (a 4096² field at 1 Å binned ×4) of the built-in
reference, denoised in live mode with the shipped default model, then
`micrograph_statistics` on (raw, denoised). Two sets:

- varying density: `--micrographs` micrographs with 5 … 400 particles (log-spaced), good
  ice; the candidate count against the true count (median relative error, correlation of
  the logs) and precision/recall of the candidates (matched within 0.5·D);
- labelled classes, `--per-class` each: good, empty (very few particles), thick ice
  (1000–1500 Å), aggregated (70 % of particles in clumps), carbon (the centre on carbon,
  rim 0.2 of the field away); the verdict × class confusion table.

Prints the tables and writes the "Picking readiness" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from results import markdown_table, write_section

from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.model.pipeline import DenoiseSettings, denoise_image
from streamdenoise.physics.density import load_reference
from streamdenoise.physics.simulator import MicrographParams, simulate_micrograph
from streamdenoise.stats.ground_truth import (
    match_picks,
)
from streamdenoise.stats.readiness import VERDICTS, MicrographStatistics, micrograph_statistics

PIXEL_SIZE = 4.0
"""Working pixel size, Å/px."""
SHAPE = (1024, 1024)
GOOD_PARTICLES = (150, 350)
"""Particles requested per good micrograph (≈ 900–2100 per µm² of 1024² at 4 Å/px)."""
CLASSES: dict[str, dict[str, object]] = {
    "good": {},
    "empty": {"particles": (3, 12)},
    "thick ice": {"ice_thickness": (1000.0, 1500.0)},
    "aggregated": {"aggregate_fraction": 0.7},
    "carbon": {"carbon_edge": 0.2},
}
"""Class label → parameters that differ from a good micrograph (tuples: uniform ranges)."""


def draw_params(seed: int, **changes: object) -> MicrographParams:
    """A good micrograph's parameters drawn for `seed` (defocus 0.8–2.5 µm, ice 250–500 Å,
    `GOOD_PARTICLES`) with `changes` on top (tuples are ranges to draw from uniformly)."""
    rng = np.random.default_rng(seed)
    defocus = float(rng.uniform(8000.0, 25000.0))
    values: dict[str, object] = {
        "defocus_u": defocus,
        "defocus_v": defocus,
        "ice_thickness": float(rng.uniform(250.0, 500.0)),
        "particles": GOOD_PARTICLES,
        **changes,
    }
    values = {k: rng.uniform(*v) if isinstance(v, tuple) else v for k, v in values.items()}
    values["particles"] = round(values["particles"])
    return MicrographParams(
        shape=SHAPE, pixel_size=PIXEL_SIZE, detector_pixel_size=1.0, seed=seed, **values
    )


@dataclass(frozen=True)
class Outcome:
    """One simulated micrograph through the denoiser and the statistics: the true count,
    the statistics, the candidates' precision and recall against the true positions
    (matched within 0.5·D), and the seconds `micrograph_statistics` took."""

    true_count: int
    statistics: MicrographStatistics
    precision: float
    recall: float
    seconds: float


def run_one(params: MicrographParams, reference, denoise: Callable) -> Outcome:
    """Simulate, denoise and measure one micrograph; score the candidates against truth."""
    simulated = simulate_micrograph(reference, params)
    denoised = denoise(simulated.noisy)
    start = time.perf_counter()
    statistics = micrograph_statistics(simulated.noisy, denoised, PIXEL_SIZE, reference.diameter)
    seconds = time.perf_counter() - start
    truth = simulated.coordinates
    hits = match_picks(statistics.coordinates, truth, 0.5 * reference.diameter / PIXEL_SIZE)
    precision = float(hits.mean()) if len(hits) else float("nan")
    recall = float(hits.sum() / len(truth)) if len(truth) else float("nan")
    return Outcome(len(truth), statistics, precision, recall, seconds)


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation, NaN when either is constant."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def median(values: list[float]) -> float:
    """Median of the finite values (NaN when there are none)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def density_section(outcomes: list[Outcome]) -> str:
    """Candidate count against the true count over the varying-density set."""
    true = np.array([o.true_count for o in outcomes], dtype=np.float64)
    found = np.array([o.statistics.candidates for o in outcomes], dtype=np.float64)
    error = np.abs(found - true) / np.maximum(true, 1)
    bins = [(0, 20), (20, 80), (80, 200), (200, 10**9)]
    rows = []
    for low, high in bins:
        chosen = [o for o in outcomes if low <= o.true_count < high]
        if chosen:
            rows.append(
                [
                    f"{low}–{high - 1}" if high < 10**9 else f"≥ {low}",
                    len(chosen),
                    f"{median([o.true_count for o in chosen]):.0f}",
                    f"{median([o.statistics.candidates for o in chosen]):.0f}",
                    f"{median([o.precision for o in chosen]):.2f}",
                    f"{median([o.recall for o in chosen]):.2f}",
                    f"{median([o.statistics.cnr for o in chosen]):.2f}",
                ]
            )
    table = markdown_table(
        [
            "true particles",
            "micrographs",
            "median true",
            "median candidates",
            "precision",
            "recall",
            "CNR",
        ],
        rows,
    )
    return (
        f"Median relative error of the candidate count {np.median(error):.2f}; correlation "
        f"with the true count r = {correlation(found, true):.2f} (of the logs "
        f"{correlation(np.log1p(found), np.log1p(true)):.2f}).\n\n" + table
    )


CLASS_COLUMNS = {
    "candidates": ("candidates", ".0f"),
    "cnr_raw": ("CNR raw", ".2f"),
    "cnr": ("CNR denoised", ".2f"),
    "empty_fraction": ("empty", ".2f"),
    "aggregated_fraction": ("aggregated", ".2f"),
    "carbon_fraction": ("carbon", ".2f"),
}
"""Statistics whose medians the class table shows: field → (header, format)."""


def class_section(outcomes: dict[str, list[Outcome]]) -> str:
    """Verdict × class confusion, with each class's medians and most frequent reasons."""
    rows = []
    for label, chosen in outcomes.items():
        verdicts = [o.statistics.verdict for o in chosen]
        reasons = Counter(
            r.split(":")[0] for o in chosen for r in o.statistics.reasons if "marginal" not in r
        )
        medians = [
            f"{median([getattr(o.statistics, name) for o in chosen]):{spec}}"
            for name, (_, spec) in CLASS_COLUMNS.items()
        ]
        common = ", ".join(f"{r} ({n})" for r, n in reasons.most_common(2)) or "–"
        rows.append([label, *(verdicts.count(v) for v in VERDICTS), *medians, common])
    headers = [header for header, _ in CLASS_COLUMNS.values()]
    return markdown_table(["class", *VERDICTS, *headers, "main reasons (not ready)"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micrographs", type=int, default=50, help="Varying-density set.")
    parser.add_argument("--per-class", type=int, default=10, help="Micrographs per class.")
    parser.add_argument("--classes", default=",".join(CLASSES), help="Comma-separated.")
    parser.add_argument("--model", type=Path, default=None, help="Default: the shipped one.")
    args = parser.parse_args()
    labels = [label.strip() for label in args.classes.split(",") if label.strip()]
    unknown = sorted(set(labels) - set(CLASSES))
    if unknown:
        parser.error(f"unknown class(es) {unknown}; choose from {list(CLASSES)}")

    loaded = load_model(args.model or default_model_path())
    model_name = f"the model {args.model}" if args.model else "the shipped default model"
    reference = load_reference()

    def denoise(image: np.ndarray) -> np.ndarray:
        denoised, pixel = denoise_image(
            image, PIXEL_SIZE, loaded.model, loaded.pixel_size, DenoiseSettings()
        )
        if pixel != PIXEL_SIZE:
            raise SystemExit(f"the model works at {pixel} Å/px, this benchmark at {PIXEL_SIZE}")
        return denoised.image

    start = time.perf_counter()
    counts = np.geomspace(5, 400, args.micrographs).round().astype(int)
    density = []
    for i, count in enumerate(counts):
        density.append(run_one(draw_params(1000 + i, particles=int(count)), reference, denoise))
        print(
            f"density {i + 1}/{len(counts)}: {density[-1].true_count} true, "
            f"{density[-1].statistics.candidates} candidates",
            flush=True,
        )
    classes: dict[str, list[Outcome]] = {}
    for label in labels:
        classes[label] = [
            run_one(
                draw_params(2000 + 100 * list(CLASSES).index(label) + i, **CLASSES[label]),
                reference,
                denoise,
            )
            for i in range(args.per_class)
        ]
        print(f"class {label}: {[o.statistics.verdict for o in classes[label]]}", flush=True)
    everything = density + [o for chosen in classes.values() for o in chosen]
    seconds = median([o.seconds for o in everything])
    body = (
        f"Built-in reference (6MSM, D = {reference.diameter:.0f} Å = "
        f"{reference.diameter / PIXEL_SIZE:.0f} px), 1024² micrographs at 4 Å/px "
        "(a 4096² field at 1 Å binned ×4, 40 e⁻/Å², defocus 0.8–2.5 µm, ice 250–500 Å "
        f"unless the class says otherwise), denoised in live mode by {model_name}; "
        f"`micrograph_statistics` with the default thresholds took {seconds:.2f} s "
        f"per micrograph (median, this CPU). Wall time {time.perf_counter() - start:.0f} s.\n\n"
        f"### Candidate count, {len(density)} micrographs of 5–400 particles\n\n"
        + density_section(density)
        + f"\n\n### Verdict by class, {args.per_class} micrographs each\n\n"
        "Classes: good (150–350 particles); empty (3–12 particles); thick ice (1000–1500 Å); "
        "aggregated (70 % of particles in touching clumps of ~6); carbon (the field's centre "
        "on carbon, the hole's rim 0.2 of the field away, ≈ 75 % carbon).\n\n"
        + class_section(classes)
        + f"\n\nMedian CNR of the candidates over all {len(everything)} micrographs: raw "
        f"{median([o.statistics.cnr_raw for o in everything]):.2f}, denoised "
        f"{median([o.statistics.cnr for o in everything]):.2f} (same positions; the "
        "candidates are found on the denoised image, so both are selected, not unbiased)."
    )
    print(body)
    write_section(
        "Picking readiness",
        body,
        f"python benchmarks/readiness.py --micrographs {args.micrographs} "
        f"--per-class {args.per_class} --classes '{','.join(labels)}'",
    )


if __name__ == "__main__":
    main()
