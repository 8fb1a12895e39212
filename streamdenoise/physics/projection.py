"""Rotations and projections of reference densities.

Rotation convention: a matrix R maps reference coordinates p (x, y, z) to p' = R p, and
the projection integrates along z'. `render_projections` (point scatterers, exact kernels)
and `project_volume` (a sampled map, trilinear) agree to the sampling.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from streamdenoise.physics.density import (
    Scatterers,
    evaluate_radial,
    linear_splat_transfer,
    splat_bilinear,
)


def random_rotations(count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` rotation matrices (count, 3, 3) drawn uniformly on SO(3) (unit quaternions)."""
    q = rng.standard_normal((count, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def projected_potential_spectrum(
    scatterers: Scatterers,
    rotations: np.ndarray,
    centers: np.ndarray,
    shape: tuple[int, int],
    pixel_size: float,
) -> np.ndarray:
    """rfft2 spectrum of the projected potential (V·Å) of rotated copies of a reference.

    rotations: (P, 3, 3); centers: (P, 2) particle centres (x, y) in pixels of the output
    grid; shape: (ny, nx); pixel_size: Å/px. Returns complex128 (ny, nx//2 + 1), the
    spectrum of Σ_p V_z(R_p; r − c_p) sampled at `pixel_size` (the splatting blur divided
    out). All particles are rendered in one pass: one FFT per scattering group.
    """
    ny, nx = shape
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    k = np.sqrt(fx**2 + fy**2) / pixel_size
    spectrum = np.zeros((ny, nx // 2 + 1), dtype=np.complex128)
    if len(rotations) == 0:
        return spectrum
    in_plane = np.einsum("pij,nj->pni", rotations[:, :2, :], scatterers.positions)  # (P, N, 2)
    coords = in_plane / pixel_size + centers[:, None, :]
    for group, kernel in enumerate(scatterers.kernels):
        members = scatterers.groups == group
        grid = np.zeros(shape)
        group_coords = coords[:, members].reshape(-1, 2)
        group_weights = np.tile(scatterers.weights[members], len(rotations))
        splat_bilinear(grid, group_coords, group_weights)
        spectrum += np.fft.rfft2(grid) * evaluate_radial(kernel, k)
    spectrum /= np.maximum(linear_splat_transfer([fx, fy]), 1e-3)
    return spectrum / pixel_size**2


def render_projections(
    scatterers: Scatterers, rotations: np.ndarray, box: int, pixel_size: float
) -> np.ndarray:
    """Projected potentials (V·Å) of a reference at `rotations` (K, 3, 3), one per box.

    Returns float32 (K, box, box), each particle centred at pixel (box // 2, box // 2).
    """
    centre = np.full((1, 2), box // 2, dtype=np.float64)
    return np.stack(
        [
            np.fft.irfft2(
                projected_potential_spectrum(scatterers, r[None], centre, (box, box), pixel_size),
                s=(box, box),
            )
            for r in rotations
        ]
    ).astype(np.float32)


def project_volume(volume: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Real-space projections of a cubic map along z after rotation.

    volume: (D, D, D), axes (z, y, x), centre at voxel D // 2; rotations: (K, 3, 3).
    Returns (K, D, D): line integrals in voxel units (multiply by the voxel size in Å for
    V·Å when the map is a potential in V). Trilinear sampling, zero outside the box.
    """
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"expected a cubic volume (D, D, D), got {tuple(volume.shape)}")
    if rotations.ndim != 3 or rotations.shape[1:] != (3, 3):
        raise ValueError(f"expected rotations (K, 3, 3), got {tuple(rotations.shape)}")
    size = volume.shape[0]
    axis = torch.arange(size, dtype=volume.dtype, device=volume.device) - size // 2
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    rotated_frame = torch.stack([x, y, z], dim=-1)  # (D, D, D, 3) coordinates p' = R p
    # p = Rᵀ p' for every output sample; then to grid_sample's [-1, 1] (x, y, z) order.
    source = torch.einsum("kji,zyxj->kzyxi", rotations.to(volume.dtype), rotated_frame)
    normalised = (source + size // 2) * (2 / (size - 1)) - 1
    sampled = torch.nn.functional.grid_sample(
        volume[None, None].expand(len(rotations), 1, -1, -1, -1),
        normalised,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    return sampled[:, 0].sum(dim=1)


TEMPLATE_BOX = 1.6
"""Side of a reference's template, in particle diameters (its CTF fringes reach past it)."""
REFERENCE_VIEWS = 3
"""Templates per reference: groups of its views by their radial profile (`reference_views`).
A globular particle's groups agree and make one template (`SAME_VIEW`); an elongated one
(6MSM, 129 Å long) keeps its side views apart from its end-on ones, which a single
average misses (readiness benchmark with the reference: 6MSM's median count error 0.28
with one template, 0.18 with three)."""
SAME_VIEW = 0.05
"""Views whose group means all lie within this fraction (relative L2 distance) of the
overall mean are one view (hollow spheres of 60/40 to 100/80 Å: ≤ 0.003; the elongated
6MSM and random smooth complexes: 0.09–0.34)."""


def reference_projection(
    scatterers: Scatterers, diameter_angstrom: float, pixel_size: float
) -> np.ndarray:
    """`reference_views` of a reference for particles of `diameter_angstrom`, in a box of
    `TEMPLATE_BOX` diameters (even side, pixels at `pixel_size` Å/px): (K, box, box)."""
    box = 2 * math.ceil(TEMPLATE_BOX * diameter_angstrom / pixel_size / 2)
    return reference_views(scatterers, box, pixel_size)


SPHERE_SUPERSAMPLING = 4
"""Sub-pixels per pixel side over which `sphere_projection` averages its sharp rim."""


def sphere_projection(diameter_angstrom: float, pixel_size: float) -> np.ndarray:
    """A uniform solid sphere of `diameter_angstrom`, projected: its thickness (Å) through
    each pixel, averaged over `SPHERE_SUPERSAMPLING`² sub-pixels, in the box of
    `reference_projection` (`TEMPLATE_BOX` diameters at `pixel_size` Å/px). (1, box, box)
    float32, centred at pixel (box // 2, box // 2): a generic round particle when the user
    gives no reference."""
    box = 2 * math.ceil(TEMPLATE_BOX * diameter_angstrom / pixel_size / 2)
    fine = (np.arange(box * SPHERE_SUPERSAMPLING) + 0.5) / SPHERE_SUPERSAMPLING - box // 2 - 0.5
    radius_squared = (fine[:, None] ** 2 + fine[None, :] ** 2) * pixel_size**2
    thickness = 2 * np.sqrt(np.maximum((diameter_angstrom / 2) ** 2 - radius_squared, 0.0))
    pixels = thickness.reshape(box, SPHERE_SUPERSAMPLING, box, SPHERE_SUPERSAMPLING).mean((1, 3))
    return pixels[None].astype(np.float32)


def radial_average(images: np.ndarray) -> np.ndarray:
    """Each image (..., box, box) averaged over rotations about pixel (box // 2, box // 2),
    float64, same shape."""
    box = images.shape[-1]
    yy, xx = np.mgrid[0:box, 0:box] - box // 2
    ring = np.round(np.hypot(xx, yy)).astype(int)
    flat = images.reshape(-1, box * box)
    counts = np.bincount(ring.ravel())
    profiles = np.stack([np.bincount(ring.ravel(), image) / counts for image in flat])
    return profiles[:, ring].reshape(images.shape)


def reference_views(
    scatterers: Scatterers,
    box: int,
    pixel_size: float,
    views: int = REFERENCE_VIEWS,
    count: int = 64,
    seed: int = 0,
) -> np.ndarray:
    """What a particle of the reference looks like in an unknown orientation: the
    projected potentials (V·Å) of `count` random orientations, each averaged over
    rotations about the centre, grouped by k-means into `views` groups (seeded at the
    most different profiles), each group's mean. (views, box, box) float32, centred at
    pixel (box // 2, box // 2), largest group first; (1, box, box), the mean of all, where
    no group's mean differs from it by more than `SAME_VIEW` (a globular particle: one
    matched filter does, at a third of the cost)."""
    rotations = random_rotations(count, np.random.default_rng(seed))
    profiles = radial_average(render_projections(scatterers, rotations, box, pixel_size))
    flat = profiles.reshape(count, -1)
    # Farthest-point seeds from the overall mean, then Lloyd's iterations.
    centres = [flat.mean(axis=0)]
    for _ in range(views):
        distance = np.min([np.sum((flat - c) ** 2, axis=1) for c in centres], axis=0)
        centres.append(flat[int(np.argmax(distance))])
    centres = np.stack(centres[1:])
    for _ in range(20):
        labels = np.argmin(((flat[:, None] - centres[None]) ** 2).sum(axis=2), axis=1)
        centres = np.stack(
            [
                flat[labels == k].mean(axis=0) if np.any(labels == k) else centres[k]
                for k in range(views)
            ]
        )
    overall = flat.mean(axis=0)
    spread = np.linalg.norm(centres - overall, axis=1) / np.linalg.norm(overall)
    if spread.max() <= SAME_VIEW:
        return overall.reshape(1, box, box).astype(np.float32)
    sizes = np.bincount(labels, minlength=views)
    order = np.argsort(-sizes, kind="stable")
    return centres[order].reshape(views, box, box).astype(np.float32)
