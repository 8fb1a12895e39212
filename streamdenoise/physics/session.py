"""Sessions of simulated micrographs: detector presets and per-micrograph parameters.

Pure: a `SessionSpec` and an index give the `MicrographParams` of that micrograph,
deterministically, whatever order micrographs are drawn in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamdenoise.physics.simulator import MicrographParams

DETECTORS: dict[str, tuple[tuple[int, int], float]] = {
    "falcon4i": ((4096, 4096), 0.93),
    "k3": ((4092, 5760), 0.83),
    "small": ((1024, 1024), 1.0),
}
"""Detector presets: shape (ny, nx) in physical pixels and a typical pixel size in Å."""


@dataclass(frozen=True)
class SessionSpec:
    """How to draw a session's micrographs.

    detector: a key of DETECTORS; binning: integer output binning (the written pixel size
    is the detector's × binning); dose: e⁻/Å²; defocus_range: (min, max) in µm;
    astigmatism: maximum |Δf_u − Δf_v| in Å; particle_density: mean particles per µm² of
    hole (each micrograph draws 0.5–1.5× this); carbon_edge_fraction: share of micrographs
    with a carbon edge in view; aggregate_fraction, empty_fraction: see MicrographParams;
    ice_thickness_range: (min, max) mean thickness in Å.
    """

    count: int = 10
    seed: int = 0
    detector: str = "falcon4i"
    pixel_size: float | None = None
    binning: int = 1
    dose: float = 40.0
    defocus_range: tuple[float, float] = (0.8, 2.5)
    astigmatism: float = 400.0
    particle_density: float = 1800.0
    carbon_edge_fraction: float = 0.2
    aggregate_fraction: float = 0.05
    empty_fraction: float = 0.0
    ice_thickness_range: tuple[float, float] = (250.0, 500.0)

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown detector {self.detector!r}; choose from {list(DETECTORS)}")
        if self.count < 0 or self.binning < 1 or self.dose <= 0:
            raise ValueError("count must be ≥ 0, binning ≥ 1 and dose > 0")
        low, high = self.defocus_range
        if not 0 < low <= high:
            raise ValueError(f"defocus range must be 0 < min ≤ max µm, got {self.defocus_range}")

    @property
    def detector_pixel_size(self) -> float:
        """Physical pixel size in Å."""
        return self.pixel_size or DETECTORS[self.detector][1]

    @property
    def output_shape(self) -> tuple[int, int]:
        """(ny, nx) of the written micrographs."""
        ny, nx = DETECTORS[self.detector][0]
        return ny // self.binning, nx // self.binning


def parse_range(text: str, option: str) -> tuple[float, float]:
    """Parse "a:b" (or a single number) into (a, b); ValueError naming `option` otherwise."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise ValueError(f"{option}: expected MIN:MAX numbers, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] > parts[1]:
        raise ValueError(f"{option}: expected MIN:MAX with MIN ≤ MAX, got {text!r}")
    return parts[0], parts[1]


def micrograph_params(spec: SessionSpec, index: int) -> MicrographParams:
    """Draw the parameters of micrograph `index` (0-based); deterministic for spec.seed."""
    rng = np.random.default_rng([spec.seed, index])
    pixel = spec.detector_pixel_size * spec.binning
    ny, nx = spec.output_shape
    area_um2 = ny * nx * pixel**2 / 1e8
    defocus = rng.uniform(*spec.defocus_range) * 1e4
    astigmatism = rng.uniform(0, spec.astigmatism)
    has_carbon = rng.random() < spec.carbon_edge_fraction
    particle_count = round(spec.particle_density * area_um2 * rng.uniform(0.5, 1.5))
    return MicrographParams(
        shape=(ny, nx),
        pixel_size=pixel,
        detector_pixel_size=spec.detector_pixel_size,
        seed=int(rng.integers(2**31)),
        dose=spec.dose,
        defocus_u=defocus + astigmatism / 2,
        defocus_v=defocus - astigmatism / 2,
        astigmatism_angle=float(rng.uniform(0, 180)),
        ice_thickness=float(rng.uniform(*spec.ice_thickness_range)),
        ice_gradient=float(rng.uniform(0.05, 0.4)),
        carbon_edge=float(rng.uniform(-0.45, -0.15)) if has_carbon else None,
        particles=particle_count,
        aggregate_fraction=spec.aggregate_fraction,
        empty_fraction=spec.empty_fraction,
    )
