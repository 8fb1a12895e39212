"""A physical simulator of motion-corrected cryo-EM micrographs with ground truth.

Image formation (all pure numpy, deterministic for a seed):
1. Particles: randomly rotated copies of a reference at known positions (minimum spacing,
   optional aggregates and empty areas), their projected Coulomb potential in ice from
   electron scattering factors (`density.py`), phase φ = σ_e·V_z.
2. Ice: a thickness map (mean, gradient and smooth random variation) gives the
   inelastic attenuation exp(−t/λ_in) of an energy-filtered image and the ice's own
   structural phase noise (random water molecules, variance ∝ thickness); an optional
   carbon edge (the rim of a holey-carbon hole) adds a thick, attenuating, grainy film.
3. Weak-phase imaging through the CTF (defocus with astigmatism, Cs, 7 % amplitude
   contrast, B-factor envelope), the detector's pixel MTF, then Poisson shot noise at the
   dose. Pixel values are electron counts per pixel of the written image.

The noise-free expected counts are kept as ground truth, with the particle coordinates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from streamdenoise.physics.ctf import ctf_2d, electron_wavelength, interaction_constant
from streamdenoise.physics.density import (
    ICE_MEAN_INNER_POTENTIAL,
    Scatterers,
    atom_kernel,
    evaluate_radial,
)
from streamdenoise.physics.projection import projected_potential_spectrum, random_rotations

ICE_INELASTIC_MEAN_FREE_PATH = 3500.0
"""Zero-loss (energy-filtered) inelastic mean free path of amorphous ice at 300 kV, Å."""
CARBON_INELASTIC_MEAN_FREE_PATH = 1600.0
"""Same for amorphous carbon, Å."""
CARBON_MEAN_INNER_POTENTIAL = 9.0
"""Mean inner potential of amorphous carbon, V."""
WATER_MOLECULES_PER_A3 = 0.0307
"""Number density of amorphous ice (0.92 g/cm³), molecules/Å³."""
CARBON_ATOMS_PER_A3 = 0.10
"""Number density of amorphous carbon (2.0 g/cm³), atoms/Å³."""


@dataclass(frozen=True)
class MicrographParams:
    """Everything that defines one simulated micrograph.

    shape: (ny, nx) pixels of the written image; pixel_size: its Å/px; detector_pixel_size:
    the physical pixel (Å) before any binning (sets the MTF); dose: e⁻/Å² in total;
    defocus_u/v: Å, underfocus positive; astigmatism_angle: degrees; b_factor: Å²;
    ice_thickness: mean Å; ice_gradient: fractional thickness change across the field;
    ice_variation: std of the smooth thickness variation as a fraction of the mean;
    carbon_edge: distance (fraction of the field) of a carbon edge from the centre, None for
    no carbon (negative: the centre is in the hole); particles: number requested;
    min_spacing: minimum centre distance in particle diameters; aggregate_fraction: share of
    particles in clumps; empty_fraction: share of the area with no particles.
    """

    shape: tuple[int, int]
    pixel_size: float
    seed: int
    detector_pixel_size: float | None = None
    dose: float = 40.0
    defocus_u: float = 15000.0
    defocus_v: float = 15000.0
    astigmatism_angle: float = 0.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    b_factor: float = 100.0
    ice_thickness: float = 350.0
    ice_gradient: float = 0.3
    ice_variation: float = 0.08
    carbon_edge: float | None = None
    carbon_thickness: float = 150.0
    particles: int = 100
    min_spacing: float = 1.0
    aggregate_fraction: float = 0.0
    empty_fraction: float = 0.0

    def to_json(self) -> dict:
        """Plain-JSON parameters (units in the field names' docstring)."""
        return asdict(self)


@dataclass(frozen=True)
class SimulatedMicrograph:
    """A simulated micrograph and its ground truth.

    noisy: float32 (ny, nx) electron counts; clean: float32 (ny, nx) expected counts
    (noise-free, same units); particle_signal: float32 (ny, nx) the particles' own
    contribution to `clean`; coordinates: (P, 2) particle centres (x, y) in pixels;
    carbon_mask: bool (ny, nx); params: the parameters; diameter: particle diameter, Å.
    """

    noisy: np.ndarray
    clean: np.ndarray
    particle_signal: np.ndarray
    coordinates: np.ndarray
    carbon_mask: np.ndarray
    params: MicrographParams
    diameter: float
    extra: dict = field(default_factory=dict)


def smooth_random_field(
    shape: tuple[int, int], correlation_length: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian random field (ny, nx), zero mean, unit std, Gaussian correlation (pixels)."""
    coarse_factor = max(1, int(correlation_length / 8))  # draw coarse, then interpolate
    coarse_shape = (shape[0] // coarse_factor + 2, shape[1] // coarse_factor + 2)
    white = rng.standard_normal(coarse_shape)
    fy = np.fft.fftfreq(coarse_shape[0])[:, None]
    fx = np.fft.rfftfreq(coarse_shape[1])[None, :]
    sigma = correlation_length / coarse_factor
    smooth = np.fft.irfft2(
        np.fft.rfft2(white) * np.exp(-2 * math.pi**2 * sigma**2 * (fx**2 + fy**2)),
        s=coarse_shape,
    )
    y = np.linspace(0, coarse_shape[0] - 2, shape[0])
    x = np.linspace(0, coarse_shape[1] - 2, shape[1])
    rows = np.array([np.interp(x, np.arange(coarse_shape[1]), row) for row in smooth])
    upsampled = np.array([np.interp(y, np.arange(coarse_shape[0]), col) for col in rows.T]).T
    upsampled -= upsampled.mean()
    return upsampled / max(float(upsampled.std()), 1e-12)


def place_particles(
    count: int,
    shape: tuple[int, int],
    spacing: float,
    allowed: np.ndarray,
    rng: np.random.Generator,
    aggregate_fraction: float = 0.0,
    margin: float = 0.0,
) -> np.ndarray:
    """Particle centres (P, 2) as (x, y) pixels, P ≤ count.

    Free particles keep at least `spacing` pixels apart and sit where `allowed` (ny, nx
    bool) is true, at least `margin` pixels from the edges; a share `aggregate_fraction`
    of them is placed in clumps of about six, touching (0.6–0.9 × spacing apart).
    """
    ny, nx = shape
    accepted: list[tuple[float, float]] = []
    clumped = round(count * aggregate_fraction)
    free = count - clumped
    cell = max(spacing, 1.0)
    grid: dict[tuple[int, int], list[int]] = {}

    def fits(x: float, y: float, min_distance: float) -> bool:
        if not (margin <= x < nx - margin and margin <= y < ny - margin):
            return False
        if not allowed[int(y), int(x)]:
            return False
        cx, cy = int(x // cell), int(y // cell)
        for gx in range(cx - 1, cx + 2):
            for gy in range(cy - 1, cy + 2):
                for i in grid.get((gx, gy), ()):
                    ax, ay = accepted[i]
                    if (ax - x) ** 2 + (ay - y) ** 2 < min_distance**2:
                        return False
        return True

    def accept(x: float, y: float) -> None:
        grid.setdefault((int(x // cell), int(y // cell)), []).append(len(accepted))
        accepted.append((x, y))

    attempts = 0
    while len(accepted) < free and attempts < 50 * count + 100:
        attempts += 1
        x, y = rng.uniform(0, nx), rng.uniform(0, ny)
        if fits(x, y, spacing):
            accept(x, y)
    clumps = max(1, round(clumped / 6)) if clumped else 0
    for _ in range(clumps):
        for _ in range(50):
            x, y = rng.uniform(0, nx), rng.uniform(0, ny)
            if fits(x, y, spacing):
                break
        else:
            continue
        accept(x, y)
        members = [(x, y)]
        for _ in range(30 * 6):
            if len(members) >= 6 or len(accepted) >= count:
                break
            bx, by = members[rng.integers(len(members))]
            angle = rng.uniform(0, 2 * math.pi)
            distance = rng.uniform(0.65, 0.9) * spacing
            nx_, ny_ = bx + distance * math.cos(angle), by + distance * math.sin(angle)
            if fits(nx_, ny_, 0.6 * spacing):
                accept(nx_, ny_)
                members.append((nx_, ny_))
    return np.asarray(accepted, dtype=np.float64).reshape(-1, 2)


def _water_kernel(k: np.ndarray) -> np.ndarray:
    """Potential kernel (V·Å³) of one water molecule (O + 2 H as independent atoms)."""
    return atom_kernel("O", in_ice=False)(k) + 2 * atom_kernel("H", in_ice=False)(k)


def amorphous_structure_factor(k: np.ndarray, spacing: float) -> np.ndarray:
    """Structure factor of an amorphous solid: S(0) ≈ 0.05 rising to 1 beyond 1/spacing."""
    return 0.05 + 0.95 * (1 - np.exp(-((k * spacing) ** 2)))


def _random_phase_spectrum(
    density_per_area: np.ndarray,
    kernel_k: np.ndarray,
    structure: np.ndarray,
    pixel_size: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """rfft2 spectrum of a random projected potential (V·Å) of an amorphous layer.

    density_per_area: (ny, nx) scatterers per Å² (thickness × number density); kernel_k and
    structure: one scatterer's kernel (V·Å³) and the structure factor on the rfft grid.
    A Gaussian field with power spectrum n |v(k)|² S(k), modulated by the local density.
    """
    white = rng.standard_normal(density_per_area.shape) * np.sqrt(density_per_area)
    return np.fft.rfft2(white) * (kernel_k * np.sqrt(structure) / pixel_size)


def fast_fft_size(n: int) -> int:
    """Smallest integer ≥ n whose prime factors are 2, 3, 5 and 7 (fast FFT sizes)."""
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def delocalization_margin(params: MicrographParams) -> int:
    """Pixels by which the CTF spreads a point at Nyquist, λ·Δf_max·k_Nyquist / pixel size.

    The simulation runs on a canvas this much larger on every side, so that the FFTs'
    periodic wrap-around never reaches the written image.
    """
    defocus = max(params.defocus_u, params.defocus_v)
    nyquist = 0.5 / params.pixel_size
    spread = electron_wavelength(params.voltage_kv) * defocus * nyquist / params.pixel_size
    return math.ceil(spread) + 16


def simulate_micrograph(
    scatterers: Scatterers, params: MicrographParams, keep_particle_signal: bool = False
) -> SimulatedMicrograph:
    """Simulate one micrograph of `scatterers` with `params` (see the module docstring).

    keep_particle_signal: also return the particles' own noise-free contribution (costs
    three more FFTs); otherwise `particle_signal` is an empty (0, 0) array.
    """
    rng = np.random.default_rng(params.seed)
    ny, nx = params.shape
    margin = delocalization_margin(params)
    canvas = (fast_fft_size(ny + 2 * margin), fast_fft_size(nx + 2 * margin))
    my, mx = (canvas[0] - ny) // 2, (canvas[1] - nx) // 2
    pixel = params.pixel_size
    detector_pixel = params.detector_pixel_size or pixel
    sigma_e = interaction_constant(params.voltage_kv)
    diameter_px = scatterers.diameter / pixel

    fy = np.fft.fftfreq(canvas[0])[:, None]
    fx = np.fft.rfftfreq(canvas[1])[None, :]
    k = np.sqrt(fx**2 + fy**2) / pixel  # 1/Å

    # Ice thickness (Å): gradient across the field plus smooth random variation.
    yy, xx = np.mgrid[-my : canvas[0] - my, -mx : canvas[1] - mx].astype(np.float64)
    direction = rng.uniform(0, 2 * math.pi)
    field_size = max(nx, ny)
    ramp = ((xx - nx / 2) * math.cos(direction) + (yy - ny / 2) * math.sin(direction)) / field_size
    variation = smooth_random_field(canvas, field_size / 6, rng)
    thickness = params.ice_thickness * (
        1 + params.ice_gradient * ramp + params.ice_variation * variation
    )
    thickness = np.clip(thickness, 0.2 * params.ice_thickness, None)

    # Carbon: outside a hole of 1.2 µm diameter whose rim crosses the field.
    carbon_fraction = np.zeros(canvas)
    if params.carbon_edge is not None:
        hole_radius = 6000.0 / pixel
        angle = rng.uniform(0, 2 * math.pi)
        distance = hole_radius + params.carbon_edge * field_size
        cx, cy = nx / 2 + distance * math.cos(angle), ny / 2 + distance * math.sin(angle)
        radial = np.hypot(xx - cx, yy - cy) - hole_radius
        carbon_fraction = 0.5 * (1 + np.tanh(radial / 4.0))  # a soft rim of ~2 pixels
    del xx, yy, ramp, variation
    inside = (slice(my, my + ny), slice(mx, mx + nx))
    carbon = carbon_fraction[inside] > 0.5

    # Where particles may go: not on carbon, not in the empty areas.
    allowed = ~carbon
    if params.empty_fraction > 0:
        blobs = smooth_random_field(params.shape, field_size / 5, rng)
        allowed &= blobs < np.quantile(blobs, 1 - params.empty_fraction)
    coordinates = place_particles(
        params.particles,
        params.shape,
        params.min_spacing * diameter_px,
        allowed,
        rng,
        aggregate_fraction=params.aggregate_fraction,
        margin=0.25 * diameter_px,
    )
    rotations = random_rotations(len(coordinates), rng)
    particle_phase = sigma_e * projected_potential_spectrum(
        scatterers, rotations, coordinates + np.array([mx, my]), canvas, pixel
    )

    # Amorphous ice and carbon: structural phase noise and their mean-potential phase.
    total_phase = particle_phase + sigma_e * _random_phase_spectrum(
        thickness * WATER_MOLECULES_PER_A3,
        evaluate_radial(_water_kernel, k),
        amorphous_structure_factor(k, 3.0),
        pixel,
        rng,
    )
    carbon_column = carbon_fraction * params.carbon_thickness
    layer_potential = ICE_MEAN_INNER_POTENTIAL * thickness
    if params.carbon_edge is not None:
        total_phase += sigma_e * _random_phase_spectrum(
            carbon_column * CARBON_ATOMS_PER_A3,
            evaluate_radial(atom_kernel("C", in_ice=False), k),
            amorphous_structure_factor(k, 2.0),
            pixel,
            rng,
        )
        layer_potential += CARBON_MEAN_INNER_POTENTIAL * carbon_column
    total_phase += sigma_e * np.fft.rfft2(layer_potential)
    total_phase[0, 0] = 0.0  # a uniform phase does not change the image
    del layer_potential

    ctf = ctf_2d(
        canvas,
        pixel,
        defocus_u=params.defocus_u,
        defocus_v=params.defocus_v,
        astigmatism_angle=params.astigmatism_angle,
        voltage_kv=params.voltage_kv,
        cs_mm=params.cs_mm,
        amplitude_contrast=params.amplitude_contrast,
        b_factor=params.b_factor,
    )
    mtf = np.sinc(fx * detector_pixel / pixel) * np.sinc(fy * detector_pixel / pixel)
    transmission = np.exp(
        -thickness / ICE_INELASTIC_MEAN_FREE_PATH - carbon_column / CARBON_INELASTIC_MEAN_FREE_PATH
    )
    counts_per_pixel = params.dose * pixel**2

    def expected_counts(phase_spectrum: np.ndarray, plus_one: bool) -> np.ndarray:
        """Detected counts of the weak-phase image (1 + 2·CTF ⊛ φ) through the MTF, cropped."""
        contrast = np.fft.irfft2(2 * ctf * phase_spectrum, s=canvas)
        intensity = counts_per_pixel * transmission * (contrast + 1 if plus_one else contrast)
        return np.fft.irfft2(np.fft.rfft2(intensity) * mtf, s=canvas)[inside]

    clean = expected_counts(total_phase, plus_one=True)
    particle_signal = (
        expected_counts(particle_phase, plus_one=False)
        if keep_particle_signal
        else np.zeros((0, 0))
    )
    noisy = rng.poisson(np.clip(clean, 0, None)).astype(np.float32)
    return SimulatedMicrograph(
        noisy=noisy,
        clean=clean.astype(np.float32),
        particle_signal=particle_signal.astype(np.float32),
        coordinates=coordinates,
        carbon_mask=carbon,
        params=params,
        diameter=scatterers.diameter,
    )


def particle_snr(simulated: SimulatedMicrograph) -> np.ndarray:
    """Per-particle SNR (P,): variance of the particle's noise-free signal over a box of one
    diameter around it, divided by the shot-noise variance there (Poisson: the mean count).

    Needs a micrograph simulated with `keep_particle_signal=True`.
    """
    if simulated.particle_signal.shape != simulated.clean.shape:
        raise ValueError("simulate with keep_particle_signal=True to measure particle SNR")
    half = max(1, round(simulated.diameter / simulated.params.pixel_size / 2))
    values = []
    ny, nx = simulated.clean.shape
    for x, y in simulated.coordinates:
        x0, y0 = round(x), round(y)
        box = (
            slice(max(0, y0 - half), min(ny, y0 + half)),
            slice(max(0, x0 - half), min(nx, x0 + half)),
        )
        signal = simulated.particle_signal[box]
        noise_variance = float(simulated.clean[box].mean())
        values.append(float(signal.var()) / noise_variance)
    return np.asarray(values)
