"""Model choice: picture quality per unit of compute for candidate score networks.

    python benchmarks/model_choice.py MODEL.pt [MODEL.pt ...] [--micrographs 4]

For each model file: its architecture, FLOPs per pixel (counted by torch), live-mode time
per 1024² micrograph on this machine, and the picking-relevant quality figures of
benchmarks/quality.py (PSNR, high-pass PSNR, detection AUC, picking AP) on the same held-out
3KPR micrographs at 40 and 15 e⁻/Å², next to raw. The daemon's default model is the
cheapest one that keeps the quality. Writes the "Model choice" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from quality import held_out_micrographs, live, metrics, tuned_gaussian
from results import markdown_table, write_section
from structures import structure_paths
from torch.utils.flop_counter import FlopCounterMode

from streamdenoise.engine.batches import prepare_model
from streamdenoise.model.modelfile import load_model
from streamdenoise.physics.density import load_reference

FIGURES = ["PSNR dB", "HP-PSNR dB", "AUC", "AP"]
AP_TOLERANCE = 0.01
"""Picking AP a cheaper model may lose against the best candidate and still be chosen."""
GAUSSIAN = "gaussian"
BASELINES = ("raw", GAUSSIAN)


def flops_per_pixel(model: torch.nn.Module, side: int = 256) -> float:
    """Forward-pass FLOPs per input pixel (multiply-adds count 2)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, side, side))
    return counter.get_total_flops() / side**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--micrographs", type=int, default=4, help="Per dose.")
    parser.add_argument("--doses", default="40,15", help="Comma-separated e⁻/Å².")
    args = parser.parse_args()

    cpu = torch.device("cpu")
    loaded = {path: load_model(path) for path in args.models}
    networks = {
        path: prepare_model(m.model, cpu, compile_model=False) for path, m in loaded.items()
    }
    reference = load_reference(structure_paths(["3kpr"]).get("3kpr"))
    header = ["model", "architecture", "kFLOP/px", "val. loss", "s / 1024²"]
    doses = [float(d) for d in args.doses.split(",")]
    header += [f"{figure} @{dose:g}" for dose in doses for figure in FIGURES]
    rows: dict[str, list[object]] = {
        "raw": ["raw", "", "", "", ""],
        GAUSSIAN: ["Gaussian blur (σ tuned on the truth per dose)", "", "", "", ""],
    }
    for path, m in loaded.items():
        unet = m.metadata["unet"]
        history = m.provenance.get("validation_history") or [{}]
        rows[str(path)] = [
            path.name,
            f"base {unet['base_channels']}, ×{unet['channel_multipliers']}, "
            f"{unet.get('upsample', 'highres')} upsampling",
            f"{flops_per_pixel(networks[path]) / 1e3:.1f}",
            f"{history[-1].get('validation_loss', float('nan')):.4f}",
        ]
    for dose in doses:
        truths = held_out_micrographs(reference, dose, args.micrographs)
        sigma, blur = tuned_gaussian(truths)
        print(f"{dose:g} e/A2: Gaussian baseline σ = {sigma:g} px", flush=True)
        candidates = {"raw": lambda image: image, GAUSSIAN: blur}
        candidates |= {str(p): (lambda image, n=n: live(image, n)) for p, n in networks.items()}
        for key, function in candidates.items():
            start = time.perf_counter()
            outputs = [function(t.noisy) for t in truths]
            seconds = (time.perf_counter() - start) / len(truths)
            if key not in BASELINES and dose == doses[0]:
                rows[key].append(f"{seconds:.2f}")
            values = [metrics(image, truth) for image, truth in zip(outputs, truths, strict=True)]
            rows[key] += [f"{np.mean([v[f] for v in values]):.3f}" for f in FIGURES]
            print(dose, rows[key], flush=True)
    table = markdown_table(header, list(rows.values()))
    verdict = choose(rows, doses)
    print(table + "\n\n" + verdict)
    trained = "\n".join(
        f"- {path.name}: {m.provenance.get('trained_by', '?')}, {m.provenance.get('steps', '?')} "
        f"steps, {m.provenance.get('wall_seconds', '?')} s"
        for path, m in loaded.items()
    )
    write_section(
        "Model choice",
        "Held-out 3KPR micrographs (1024² at 4 Å/px, the quality benchmark's seeds), live "
        "mode, eager CPU, batch 1, channels_last. kFLOP/px: forward-pass FLOPs per pixel; "
        "val. loss: the training run's last held-out loss (same simulated data and seed for "
        "every candidate).\n\n" + table + "\n\nCandidates:\n" + trained + "\n\n" + verdict,
    )


def choose(rows: dict[str, list[object]], doses: list[float]) -> str:
    """The rule (the quality targets of the score model): the cheapest candidate whose PSNR
    and picking AP beat both raw and the tuned Gaussian blur at every dose, with AP within
    `AP_TOLERANCE` of the best candidate's; a sentence saying which and why."""

    def column(figure: str, dose_index: int) -> int:
        return 5 + dose_index * len(FIGURES) + FIGURES.index(figure)

    def values(row: list[object], figure: str) -> list[float]:
        return [float(row[column(figure, i)]) for i in range(len(doses))]  # type: ignore[arg-type]

    candidates = {key: row for key, row in rows.items() if key not in BASELINES}
    best_ap = [max(values(r, "AP")[i] for r in candidates.values()) for i in range(len(doses))]

    def keeps_quality(row: list[object]) -> bool:
        for figure in ("PSNR dB", "AP"):
            floor = [max(values(rows[b], figure)[i] for b in BASELINES) for i in range(len(doses))]
            if not all(v > f for v, f in zip(values(row, figure), floor, strict=True)):
                return False
        return all(a >= b - AP_TOLERANCE for a, b in zip(values(row, "AP"), best_ap, strict=True))

    keeping = [
        (float(row[2]), str(row[0]))  # type: ignore[arg-type]
        for row in candidates.values()
        if keeps_quality(row)
    ]
    if not keeping:
        return "No candidate beats raw and the Gaussian blur on PSNR and AP at every dose."
    flops, name = min(keeping)
    return (
        f"Chosen: {name} ({flops:g} kFLOP/px), the cheapest candidate whose PSNR and picking "
        f"AP beat raw and the tuned Gaussian blur at every dose, with AP within "
        f"{AP_TOLERANCE} of the best."
    )


if __name__ == "__main__":
    main()
