"""Benchmark the simulator: time per 4096² micrograph with ~300 particles, and the
per-particle SNR it produces.

    python benchmarks/simulator.py [--repeats 2]

Prints a table and writes the "Simulator" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results import markdown_table, write_section

from streamdenoise.physics.density import load_reference
from streamdenoise.physics.simulator import MicrographParams, particle_snr, simulate_micrograph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="Micrographs per setting.")
    args = parser.parse_args()
    reference = load_reference()
    settings = [
        # (label, output shape, output pixel Å, dose e⁻/Å², defocus Å)
        ("4096² at 1 Å/px (full resolution)", (4096, 4096), 1.0, 40.0, 15000.0),
        ("4096² field binned ×4 → 1024² at 4 Å/px", (1024, 1024), 4.0, 40.0, 15000.0),
        ("same, low dose and defocus (15 e⁻/Å², 1.0 µm)", (1024, 1024), 4.0, 15.0, 10000.0),
    ]
    rows = []
    for label, shape, pixel, dose, defocus in settings:
        times, snrs, counts = [], [], []
        for seed in range(args.repeats):
            params = MicrographParams(
                shape=shape,
                pixel_size=pixel,
                detector_pixel_size=1.0,
                seed=seed,
                particles=300,
                dose=dose,
                defocus_u=defocus,
                defocus_v=defocus,
            )
            start = time.perf_counter()
            result = simulate_micrograph(reference, params)
            times.append(time.perf_counter() - start)
            counts.append(len(result.coordinates))
            # SNR needs the particle-only image: simulate again with it kept (not timed).
            snrs.append(np.median(particle_snr(simulate_micrograph(reference, params, True))))
        snr = float(np.median(snrs))
        rows.append(
            [
                label,
                f"{np.median(counts):.0f}",
                f"{np.median(times):.2f}",
                f"{snr:.4f}",
                f"{snr / pixel**2:.4f}",
            ]
        )
        print(rows[-1], flush=True)
    header = [
        "setting",
        "particles",
        "seconds / micrograph",
        "SNR at this pixel",
        "SNR scaled to 1 Å/px",
    ]
    body = (
        "Built-in reference (CFTR, 6MSM, diameter "
        f"{reference.diameter:.0f} Å), 300 kV, Cs 2.7 mm, 350 Å ice with gradient, B = 100 Å².\n"
        "SNR: per particle, variance of its noise-free signal over a one-diameter box divided "
        "by the shot-noise variance there (median over particles and micrographs). "
        "The last column divides by the pixel area in Å², i.e. the same particles at 1 Å/px.\n\n"
        + markdown_table(header, rows)
    )
    print(body)
    write_section("Simulator", body, "python benchmarks/simulator.py")


if __name__ == "__main__":
    main()
