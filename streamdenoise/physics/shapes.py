"""Synthetic particle densities beyond real structures: shells, rings, rods, random blobs.

Pure numpy: each function returns a density volume (n, n, n) float32 ≥ 0 at `voxel` Å per
voxel, uniform inside the shape with edges softened by a one-voxel Gaussian, centred in a
cubic box with a margin. `streamdenoise.physics.density.scatterers_from_map` turns it into
scatterers the simulator projects; the map's units are recalibrated there to protein in
ice, so only the shape matters. Used to train a prior that is not one simulator's five
proteins (hollow shells like apoferritin or virus capsids, rings like chaperonins, rods and
filament segments, random smooth complexes), and to test a structure the model never saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

MARGIN_VOXELS = 3


def _grid(extent: float, voxel: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred coordinates (Å) z, y, x of a cube holding `extent` Å plus the margin."""
    if extent <= 0 or voxel <= 0:
        raise ValueError(f"extent and voxel must be > 0, got {extent}, {voxel}")
    n = math.ceil(extent / voxel) + 2 * MARGIN_VOXELS
    axis = (np.arange(n) - (n - 1) / 2) * voxel
    return np.meshgrid(axis, axis, axis, indexing="ij")


def _soften(inside: np.ndarray) -> np.ndarray:
    """A 0/1 volume blurred by a Gaussian of one voxel (FFT), as float32 ≥ 0."""
    k = [np.fft.fftfreq(n) for n in inside.shape]
    kz, ky, kx = np.meshgrid(*k, indexing="ij")
    transfer = np.exp(-2 * math.pi**2 * (kz**2 + ky**2 + kx**2))
    soft = np.fft.ifftn(np.fft.fftn(inside.astype(np.float64)) * transfer).real
    return np.clip(soft, 0, None).astype(np.float32)


def hollow_shell(outer_radius: float, inner_radius: float, voxel: float) -> np.ndarray:
    """A spherical shell (radii in Å, inner < outer), e.g. apoferritin 60/40 Å."""
    if not 0 <= inner_radius < outer_radius:
        raise ValueError(f"need 0 <= inner < outer radius, got {inner_radius}, {outer_radius}")
    z, y, x = _grid(2 * outer_radius, voxel)
    r = np.sqrt(z**2 + y**2 + x**2)
    return _soften((r <= outer_radius) & (r >= inner_radius))


def ring(major_radius: float, tube_radius: float, voxel: float) -> np.ndarray:
    """A torus in the x–y plane: ring radius and tube radius in Å (tube < ring)."""
    if not 0 < tube_radius < major_radius:
        raise ValueError(f"need 0 < tube < ring radius, got {tube_radius}, {major_radius}")
    z, y, x = _grid(2 * (major_radius + tube_radius), voxel)
    return _soften((np.hypot(x, y) - major_radius) ** 2 + z**2 <= tube_radius**2)


def rod(length: float, radius: float, voxel: float) -> np.ndarray:
    """A solid cylinder along z (length and radius in Å): rods and filament segments."""
    if not (length > 0 and radius > 0):
        raise ValueError(f"length and radius must be > 0, got {length}, {radius}")
    z, y, x = _grid(max(length, 2 * radius), voxel)
    return _soften((np.hypot(x, y) <= radius) & (np.abs(z) <= length / 2))


def random_blobs(radius: float, voxel: float, rng: np.random.Generator) -> np.ndarray:
    """A random smooth complex within a sphere of `radius` Å: 4–24 overlapping balls of
    random sizes, clustered around the centre."""
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    z, y, x = _grid(2 * radius, voxel)
    inside = np.zeros(z.shape, dtype=bool)
    for _ in range(int(rng.integers(4, 25))):
        ball = rng.uniform(0.15, 0.45) * radius
        centre = rng.normal(0, 0.3 * radius, 3)
        norm = float(np.linalg.norm(centre))
        if norm > radius - ball:
            centre *= (radius - ball) / norm
        inside |= (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= ball**2
    return _soften(inside)


ShapeMaker = Callable[[float, float, np.random.Generator], np.ndarray]


def _shell(diameter: float, voxel: float, rng: np.random.Generator) -> np.ndarray:
    outer = diameter / 2
    return hollow_shell(outer, rng.uniform(0.55, 0.8) * outer, voxel)


def _ring(diameter: float, voxel: float, rng: np.random.Generator) -> np.ndarray:
    tube = rng.uniform(0.12, 0.25) * diameter
    return ring(diameter / 2 - tube, tube, voxel)


def _rod(diameter: float, voxel: float, rng: np.random.Generator) -> np.ndarray:
    """A rod whose length is `diameter` (the largest extent), 3–10× its width."""
    return rod(diameter, diameter / rng.uniform(6, 20), voxel)


def _blobs(diameter: float, voxel: float, rng: np.random.Generator) -> np.ndarray:
    return random_blobs(diameter / 2, voxel, rng)


SHAPES: dict[str, ShapeMaker] = {
    "shell": _shell,
    "ring": _ring,
    "rod": _rod,
    "blobs": _blobs,
}
"""Shape families by name: maker(diameter Å, voxel Å, rng) → volume."""


def random_shape(
    diameter: float, voxel: float, rng: np.random.Generator, family: str | None = None
) -> tuple[str, np.ndarray]:
    """A shape of largest extent ≈ `diameter` Å from `family` (random if None):
    (family, volume (n, n, n) float32)."""
    name = family or str(rng.choice(sorted(SHAPES)))
    if name not in SHAPES:
        raise ValueError(f"unknown shape family {name!r}; one of {sorted(SHAPES)}")
    return name, SHAPES[name](diameter, voxel, rng)
