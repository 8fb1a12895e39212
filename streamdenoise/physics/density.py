"""Reference densities: atomic models and maps as point scatterers, and 3-D potentials.

A reference is held as point scatterers (positions in Å about the centre, a weight and a
scattering group each). A group's kernel is the Fourier transform of one point's Coulomb
potential in V·Å³ as a function of spatial frequency k (1/Å). The same representation
serves the simulator (rotate, splat in 2-D, multiply by the kernels: an exact projection)
and 3-D maps (splat in 3-D, multiply by the kernels).

Atoms use the Peng (1996) five-Gaussian electron scattering factors tabulated in
International Tables C 4.3.2.2 (shipped with gemmi), minus the solvent each atom displaces
(amorphous ice at 4.87 V over 17 Å³, a Gaussian of that volume after Fraser et al. 1978),
so particles have their in-ice contrast (about 30 % of the in-vacuum one at low resolution).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from streamdenoise.errors import ReferenceMapError

POTENTIAL_PER_SCATTERING_FACTOR = 47.878
"""h²/(2π m₀ e) in V·Å²: converts an electron scattering factor (Å) to V·Å³."""
ICE_MEAN_INNER_POTENTIAL = 4.87
"""Mean inner potential of amorphous ice, V (Rullgård et al. 2011)."""
DISPLACED_VOLUME_PER_ATOM = 17.0
"""Solvent volume displaced per protein heavy atom with its hydrogens, Å³ (1.21 Å³/Da)."""
NET_POTENTIAL_PER_ATOM = 32.0
"""Low-resolution potential of one protein heavy atom in ice, V·Å³ (≈ 115 − 4.87·17)."""
BUILTIN_REFERENCE = "6msm.pdb.gz"
"""Built-in reference: human CFTR, PDB 6MSM (cryo-EM, 3.2 Å), about 9,700 heavy atoms."""

Kernel = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Scatterers:
    """Point scatterers of a reference, centred on their centre of mass.

    positions: (N, 3) float64 Å, columns (x, y, z); weights: (N,) float64;
    groups: (N,) int64 indices into `kernels`; kernels: per group, k (1/Å) → V·Å³.
    """

    positions: np.ndarray
    weights: np.ndarray
    groups: np.ndarray
    kernels: tuple[Kernel, ...]
    group_names: tuple[str, ...]
    source: str

    @property
    def radius(self) -> float:
        """Radius (Å) of the sphere about the centre holding 99 % of the scattering weight."""
        distance = np.linalg.norm(self.positions, axis=1)
        order = np.argsort(distance)
        cumulative = np.cumsum(np.abs(self.weights[order]))
        return float(distance[order][np.searchsorted(cumulative, 0.99 * cumulative[-1])])

    @property
    def diameter(self) -> float:
        """Particle diameter in Å, as pickers want it (twice the 99 % radius)."""
        return 2.0 * self.radius


def _solvent_exclusion(k: np.ndarray) -> np.ndarray:
    """Fourier transform (V·Å³) of the ice displaced by one atom, a Gaussian of 17 Å³."""
    volume = DISPLACED_VOLUME_PER_ATOM
    return ICE_MEAN_INNER_POTENTIAL * volume * np.exp(-math.pi * k**2 * volume ** (2 / 3))


def atom_kernel(element: str, in_ice: bool = True) -> Kernel:
    """Potential kernel of one atom of `element`: k (1/Å) → V·Å³.

    in_ice: subtract the ice the atom displaces (protein in vitreous ice); False gives the
    atom in vacuum (the ice's own molecules, a dry carbon film).
    """
    import gemmi

    coefficients = gemmi.Element(element).c4322
    a = np.asarray(coefficients.a, dtype=np.float64)
    b = np.asarray(coefficients.b, dtype=np.float64)
    if not np.any(a):
        raise ValueError(f"no electron scattering factors for element {element!r}")

    def kernel(k: np.ndarray) -> np.ndarray:
        s2 = (np.asarray(k, dtype=np.float64) / 2) ** 2  # (sin θ / λ)²
        form = np.zeros_like(s2)
        for a_i, b_i in zip(a, b, strict=True):
            form += a_i * np.exp(-b_i * s2)
        potential = POTENTIAL_PER_SCATTERING_FACTOR * form
        return potential - _solvent_exclusion(k) if in_ice else potential

    return kernel


def evaluate_radial(kernel: Kernel, k: np.ndarray, samples: int = 4096) -> np.ndarray:
    """Evaluate a radial kernel on an array of frequencies `k` (1/Å) through a 1-D table.

    Kernels are smooth in k, so linear interpolation of `samples` values is exact to
    about 1e-7 relative, and much faster than evaluating exponentials per grid point.
    """
    table_k = np.linspace(0.0, float(k.max()) * 1.0001 + 1e-12, samples)
    return np.interp(k, table_k, kernel(table_k))


def gaussian_kernel(integral: float, sigma: float) -> Kernel:
    """Kernel of an isotropic 3-D Gaussian of std `sigma` Å and integral `integral` V·Å³."""

    def kernel(k: np.ndarray) -> np.ndarray:
        return integral * np.exp(-2 * math.pi**2 * sigma**2 * np.asarray(k) ** 2)

    return kernel


def scatterers_from_model(path: str | Path) -> Scatterers:
    """Read a PDB or mmCIF atomic model (optionally gzipped) as point scatterers.

    Hydrogens and waters are removed (hydrogens are implicit in the displaced volume);
    occupancies become weights. Raises ReferenceMapError naming the file on failure.
    """
    import gemmi

    path = Path(path)
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as error:
        raise ReferenceMapError(path, f"cannot read atomic model: {error}") from error
    structure.remove_hydrogens()
    structure.remove_waters()
    if len(structure) == 0:
        raise ReferenceMapError(path, "atomic model has no models")
    symbols: list[str] = []
    xyz: list[tuple[float, float, float]] = []
    occupancy: list[float] = []
    for chain in structure[0]:
        for residue in chain:
            for atom in residue:
                symbols.append(atom.element.name)
                xyz.append((atom.pos.x, atom.pos.y, atom.pos.z))
                occupancy.append(atom.occ)
    if not xyz:
        raise ReferenceMapError(path, "atomic model has no atoms")
    names = tuple(sorted(set(symbols)))
    try:
        kernels = tuple(atom_kernel(name) for name in names)
    except ValueError as error:
        raise ReferenceMapError(path, str(error)) from error
    index = {name: i for i, name in enumerate(names)}
    positions = np.asarray(xyz, dtype=np.float64)
    return Scatterers(
        positions=positions - positions.mean(axis=0),
        weights=np.asarray(occupancy, dtype=np.float64),
        groups=np.asarray([index[s] for s in symbols], dtype=np.int64),
        kernels=kernels,
        group_names=names,
        source=str(path),
    )


def scatterers_from_map(
    volume: np.ndarray, pixel_size: float, source: str, max_points: int = 40_000
) -> Scatterers:
    """Turn a density map (D, H, W) at `pixel_size` Å/voxel into point scatterers.

    Voxels above a threshold become points (the map's arbitrary units are recalibrated):
    the threshold is 3 standard deviations above the map's outer shell (the solvent), or
    1 % of the maximum for a noise-free map; the total weight is set to what a protein of
    the enclosed volume (1.21 Å³/Da, 14 Da per heavy atom) has in ice at low resolution.
    Each point is a Gaussian of one voxel's width. A map with more than `max_points`
    voxels inside is first Fourier-resampled to coarser voxels (simulation speed).
    """
    if volume.ndim != 3 or min(volume.shape) < 4:
        raise ReferenceMapError(source, f"expected a 3-D map, got shape {volume.shape}")
    if not np.all(np.isfinite(volume)):
        raise ReferenceMapError(source, "map contains NaN or Inf")
    if volume.shape[0] == volume.shape[1] == volume.shape[2]:
        coarsen = (np.count_nonzero(volume > volume.mean() + volume.std()) / max_points) ** (1 / 3)
        if coarsen > 1:
            original_size = volume.shape[0]
            volume = resample_volume(volume, pixel_size, pixel_size * coarsen)
            pixel_size = pixel_size * original_size / volume.shape[0]
    shell = np.concatenate(
        [volume[[0, -1]].ravel(), volume[:, [0, -1]].ravel(), volume[:, :, [0, -1]].ravel()]
    )
    spread = float(shell.std())
    threshold = float(shell.mean()) + 3 * spread if spread > 0 else 0.01 * float(volume.max())
    inside = volume > threshold
    if inside.sum() < 8:
        raise ReferenceMapError(source, "map has no density above the solvent level")
    zyx = np.argwhere(inside).astype(np.float64)
    values = volume[inside].astype(np.float64) - threshold
    positions = (zyx[:, ::-1] - (np.asarray(volume.shape[::-1]) - 1) / 2) * pixel_size
    enclosed_volume = inside.sum() * pixel_size**3  # Å³
    heavy_atoms = enclosed_volume / DISPLACED_VOLUME_PER_ATOM
    weights = values * (heavy_atoms * NET_POTENTIAL_PER_ATOM / values.sum())
    positions -= np.average(positions, axis=0, weights=weights)
    return Scatterers(
        positions=positions,
        weights=weights,
        groups=np.zeros(len(weights), dtype=np.int64),
        kernels=(gaussian_kernel(1.0, pixel_size / 2),),
        group_names=("map",),
        source=source,
    )


def read_map(path: str | Path) -> tuple[np.ndarray, float]:
    """Read a 3-D MRC density map: (volume (D, H, W) float32, pixel size Å/voxel)."""
    import mrcfile

    path = Path(path)
    try:
        with mrcfile.open(path, permissive=False) as mrc:
            volume = np.asarray(mrc.data, dtype=np.float32).copy()
            pixel_size = float(mrc.voxel_size.x)
    except (ValueError, OSError, EOFError, AttributeError) as error:
        raise ReferenceMapError(path, f"cannot read MRC map: {error}") from error
    if volume.ndim != 3:
        raise ReferenceMapError(path, f"expected a 3-D map, got shape {volume.shape}")
    if pixel_size <= 0:
        raise ReferenceMapError(path, "map has no pixel size in its header")
    return volume, pixel_size


def builtin_reference_path() -> Path:
    """The built-in reference's file (`BUILTIN_REFERENCE`, installed with the package)."""
    return Path(str(resources.files("streamdenoise.data") / BUILTIN_REFERENCE))


def load_reference(path: str | Path | None = None) -> Scatterers:
    """Load a reference as scatterers: an MRC map, a PDB/mmCIF model, or the built-in one."""
    if path is None:
        with resources.as_file(resources.files("streamdenoise.data") / BUILTIN_REFERENCE) as p:
            return scatterers_from_model(p)
    path = Path(path)
    if not path.is_file():
        raise ReferenceMapError(path, "no such file")
    name = path.name.lower()
    if name.endswith((".mrc", ".map", ".mrc.gz", ".map.gz")):
        volume, pixel_size = read_map(path)
        return scatterers_from_map(volume, pixel_size, str(path))
    if name.endswith((".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz")):
        return scatterers_from_model(path)
    raise ReferenceMapError(path, "unknown reference type: expected .mrc/.map or .pdb/.cif")


def splat_bilinear(grid: np.ndarray, coords: np.ndarray, weights: np.ndarray) -> None:
    """Add `weights` (N,) at fractional pixel `coords` (N, d), columns (x, y[, z]), to `grid`.

    Linear interpolation weights over the 2^d neighbours; points outside are dropped.
    `grid` has shape (ny, nx) or (nz, ny, nx) and is modified in place.
    """
    dims = coords.shape[1]
    shape = grid.shape[::-1]  # (nx, ny[, nz]) to match the coordinate columns
    base = np.floor(coords).astype(np.int64)
    frac = coords - base
    flat = grid.reshape(-1)
    strides = np.cumprod((1, *shape[:-1]))
    for corner in range(2**dims):
        offset = np.array([(corner >> d) & 1 for d in range(dims)])
        index = base + offset
        w = weights * np.prod(np.where(offset, frac, 1 - frac), axis=1)
        inside = np.all((index >= 0) & (index < np.asarray(shape)), axis=1)
        flat += np.bincount(
            (index[inside] * strides).sum(axis=1), weights=w[inside], minlength=flat.size
        )


def linear_splat_transfer(frequencies: list[np.ndarray]) -> np.ndarray:
    """Transfer function of linear-interpolation splatting: Π sinc²(f), f in cycles/px."""
    transfer = np.ones(())
    for f in frequencies:
        transfer = transfer * np.sinc(f) ** 2
    return transfer


def potential_volume(scatterers: Scatterers, pixel_size: float, box: int) -> np.ndarray:
    """3-D Coulomb potential in ice (V, relative to the ice) on a cubic grid.

    Returns float32 (box, box, box), axes (z, y, x), centre at voxel box // 2, sampled at
    `pixel_size` Å/voxel. Exact up to the sampling: points are splatted, then convolved with
    their kernels in Fourier space (the splatting's own blur divided out).
    """
    if box < 2 or pixel_size <= 0:
        raise ValueError(f"need box ≥ 2 and pixel size > 0, got {box}, {pixel_size}")
    coords = scatterers.positions / pixel_size + box // 2
    freq = np.fft.fftfreq(box)
    fz, fy, fx = freq[:, None, None], freq[None, :, None], np.fft.rfftfreq(box)[None, None, :]
    k = np.sqrt(fx**2 + fy**2 + fz**2) / pixel_size
    spectrum = np.zeros((box, box, box // 2 + 1), dtype=np.complex128)
    for group, kernel in enumerate(scatterers.kernels):
        members = scatterers.groups == group
        grid = np.zeros((box, box, box))
        splat_bilinear(grid, coords[members], scatterers.weights[members])
        spectrum += np.fft.rfftn(grid) * evaluate_radial(kernel, k)
    spectrum /= np.maximum(linear_splat_transfer([fx, fy, fz]), 1e-3)
    return (np.fft.irfftn(spectrum, s=(box,) * 3, axes=(0, 1, 2)) / pixel_size**3).astype(
        np.float32
    )


def resample_volume(volume: np.ndarray, pixel_size: float, target_pixel_size: float) -> np.ndarray:
    """Resample a cubic volume (D, D, D) to `target_pixel_size` by Fourier crop or pad.

    The box in Å is kept (to within one voxel); values are interpolated, not summed.
    """
    size = volume.shape[0]
    if volume.shape != (size, size, size):
        raise ValueError(f"expected a cubic volume, got {volume.shape}")
    new_size = max(2, round(size * pixel_size / target_pixel_size))
    if new_size == size:
        return volume.astype(np.float32, copy=True)
    spectrum = np.fft.fftshift(np.fft.fftn(volume.astype(np.float64)))
    out = np.zeros((new_size,) * 3, dtype=np.complex128)
    keep = min(size, new_size)
    src = slice(size // 2 - keep // 2, size // 2 - keep // 2 + keep)
    dst = slice(new_size // 2 - keep // 2, new_size // 2 - keep // 2 + keep)
    out[dst, dst, dst] = spectrum[src, src, src]
    resampled = np.fft.ifftn(np.fft.ifftshift(out)).real * (new_size / size) ** 3
    return resampled.astype(np.float32)
