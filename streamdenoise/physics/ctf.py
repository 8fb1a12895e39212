"""Contrast transfer function of a transmission electron microscope.

Conventions: defocus in Å, positive = underfocus; spherical aberration Cs in mm;
acceleration voltage in kV; spatial frequencies in 1/Å. With
χ(k) = π λ Δf k² − π/2 Cs λ³ k⁴ (+ phase shift), the CTF is
−(√(1 − A²) sin χ + A cos χ), so a positive projected potential (protein, carbon)
images dark at low frequency, as in a real underfocused micrograph.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

ELECTRON_REST_ENERGY_KEV = 510.99895
"""m₀c² in keV."""


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    if voltage_kv <= 0:
        raise ValueError(f"voltage must be positive, got {voltage_kv} kV")
    volts = voltage_kv * 1e3
    # λ = h / sqrt(2 m0 e V (1 + eV / 2 m0 c²)), with h/sqrt(2 m0 e) = 12.2643 Å·V^½.
    return 12.264259 / math.sqrt(volts * (1.0 + voltage_kv / (2.0 * ELECTRON_REST_ENERGY_KEV)))


def interaction_constant(voltage_kv: float) -> float:
    """Interaction constant σ_e in rad/(V·Å): phase shift per unit projected potential."""
    wavelength = electron_wavelength(voltage_kv)
    volts = voltage_kv * 1e3
    rest = ELECTRON_REST_ENERGY_KEV
    return (2 * math.pi / (wavelength * volts)) * (rest + voltage_kv) / (2 * rest + voltage_kv)


def frequency_grid(
    shape: tuple[int, int], pixel_size: float, rfft: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequencies (kx, ky) in 1/Å of an image of `shape` (ny, nx) pixels.

    Returns two arrays broadcastable to (ny, nx//2 + 1) for an rfft layout or (ny, nx)
    for a full FFT layout.
    """
    ny, nx = shape
    ky = np.fft.fftfreq(ny, d=pixel_size)[:, None]
    kx = (np.fft.rfftfreq(nx, d=pixel_size) if rfft else np.fft.fftfreq(nx, d=pixel_size))[None]
    return kx, ky


def ctf_2d(
    shape: tuple[int, int],
    pixel_size: float,
    *,
    defocus_u: float,
    defocus_v: float | None = None,
    astigmatism_angle: float = 0.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    b_factor: float = 0.0,
    phase_shift: float = 0.0,
    rfft: bool = True,
) -> np.ndarray:
    """CTF of an image of `shape` (ny, nx) pixels at `pixel_size` Å/px.

    defocus_u / defocus_v: defocus (Å, underfocus positive) along the major / minor axes;
    astigmatism_angle: angle of the major axis from x in degrees; b_factor: envelope
    exp(−B k²/4) in Å²; phase_shift: extra phase (rad, for phase plates).
    Returns float64 array (ny, nx//2 + 1) if `rfft` else (ny, nx).
    """
    if pixel_size <= 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size} Å")
    if not 0.0 <= amplitude_contrast < 1.0:
        raise ValueError(f"amplitude contrast must be in [0, 1), got {amplitude_contrast}")
    if defocus_v is None:
        defocus_v = defocus_u
    kx, ky = frequency_grid(shape, pixel_size, rfft)
    k2 = kx**2 + ky**2
    azimuth = np.arctan2(ky, kx)
    mean_defocus = 0.5 * (defocus_u + defocus_v)
    half_difference = 0.5 * (defocus_u - defocus_v)
    defocus = mean_defocus + half_difference * np.cos(2 * (azimuth - np.deg2rad(astigmatism_angle)))
    wavelength = electron_wavelength(voltage_kv)
    cs = cs_mm * 1e7
    chi = (
        math.pi * wavelength * defocus * k2
        - 0.5 * math.pi * cs * wavelength**3 * k2**2
        + phase_shift
    )
    amplitude = math.sqrt(1 - amplitude_contrast**2)
    ctf = -(amplitude * np.sin(chi) + amplitude_contrast * np.cos(chi))
    if b_factor:
        ctf = ctf * np.exp(-b_factor * k2 / 4)
    return ctf


def ctf_zero_frequencies(
    defocus: float, *, voltage_kv: float = 300.0, amplitude_contrast: float = 0.0, count: int = 3
) -> np.ndarray:
    """First `count` zeros of a non-astigmatic CTF with Cs = 0, in 1/Å.

    With Cs = 0 the zeros satisfy π λ Δf k² + atan(A/√(1−A²)) = nπ, n = 1, 2, ...
    Used to check `ctf_2d` against theory.
    """
    wavelength = electron_wavelength(voltage_kv)
    offset = math.atan2(amplitude_contrast, math.sqrt(1 - amplitude_contrast**2))
    n = np.arange(1, count + 1)
    return np.sqrt((n * math.pi - offset) / (math.pi * wavelength * defocus))


DEFOCUS_SEARCH = (3000.0, 40000.0, 50.0)
"""Defocus values (Å) `estimate_defocus` tries: first, last, step."""
THON_BAND = (1 / 40, 1 / 5)
"""Spatial frequencies (1/Å) whose rings `estimate_defocus` fits (cut at 0.9 × Nyquist)."""
RINGS_SEEN = 0.1
"""`estimate_defocus`' correlation below which the Thon rings are not seen (the defocus
is then a guess)."""


def estimate_defocus(
    image: np.ndarray,
    pixel_size: float,
    *,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
) -> tuple[float, float]:
    """Defocus (Å, underfocus positive, no astigmatism) from the Thon rings of a
    micrograph (H, W) at `pixel_size` Å/px, and the fit's correlation (0–1; below `RINGS_SEEN`
    the rings are not seen).

    The ring-averaged log power spectrum within `THON_BAND`, less a quartic background
    in k, is correlated with sin²χ(k) of each defocus in `DEFOCUS_SEARCH`; the best wins.
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2 or min(data.shape) < 64:
        raise ValueError(f"need a 2-D micrograph of at least 64×64 pixels, got {data.shape}")
    ring, members, k, band, models = _thon_geometry(data.shape, pixel_size, voltage_kv, cs_mm)
    power = np.abs(np.fft.rfft2(data - data.mean())) ** 2
    profile = np.bincount(ring, power.ravel(), len(members)) / np.maximum(members, 1)
    usable = profile[band] > 0
    if usable.sum() < 16:
        raise ValueError(f"pixel size {pixel_size} Å leaves too few Thon-ring frequencies")
    log_power, k = np.log(profile[band][usable]), k[band][usable]
    ripple = log_power - np.polyval(np.polyfit(k, log_power, 4), k)
    ripple -= ripple.mean()
    models = models[:, usable]
    models = models - models.mean(axis=1, keepdims=True)
    scores = (models @ ripple) / (np.linalg.norm(models, axis=1) * np.linalg.norm(ripple))
    best = int(np.argmax(scores))
    return float(DEFOCUS_VALUES[best]), float(scores[best])


DEFOCUS_VALUES = np.arange(*DEFOCUS_SEARCH)
"""The defocus values of `DEFOCUS_SEARCH`, Å."""


@lru_cache(maxsize=4)
def _thon_geometry(
    shape: tuple[int, int], pixel_size: float, voltage_kv: float, cs_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What `estimate_defocus` needs of an image's size alone (the same for a session's
    micrographs): each rfft2 coefficient's ring (flat), the rings' sizes and centre
    frequencies k (1/Å, `min(shape) // 2` rings to Nyquist), which rings lie in
    `THON_BAND`, and one sin²-model row 2 sin²χ(k) − 1 per defocus of `DEFOCUS_VALUES`
    over those rings."""
    kx, ky = frequency_grid(shape, pixel_size)
    nyquist = 0.5 / pixel_size
    bins = min(shape) // 2
    ring = np.minimum((np.hypot(kx, ky) / nyquist * bins).astype(int), bins - 1).ravel()
    members = np.bincount(ring, None, bins)
    k = (np.arange(bins) + 0.5) / bins * nyquist
    band = (k > THON_BAND[0]) & (k < min(THON_BAND[1], 0.9 * nyquist))
    wavelength = electron_wavelength(voltage_kv)
    aberration = 0.5 * math.pi * cs_mm * 1e7 * wavelength**3 * k[band] ** 4
    chi = math.pi * wavelength * DEFOCUS_VALUES[:, None] * k[band][None, :] ** 2 - aberration
    geometry = ring, members, k, band, -np.cos(2 * chi)
    for array in geometry:  # shared between calls
        array.setflags(write=False)
    return geometry


def image_through_ctf(
    potential: np.ndarray,
    pixel_size: float,
    defocus: float,
    *,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    b_factor: float = 100.0,
) -> np.ndarray:
    """A projected potential (..., H, W) (any units, ≥ 0 where there is protein) as the
    microscope images its contrast at `defocus` Å: dark at low frequencies, with the CTF's
    fringes and an envelope exp(−B k²/4) (B in Å²). (..., H, W) float64, each zero mean."""
    data = np.asarray(potential, dtype=np.float64)
    ctf = ctf_2d(
        data.shape[-2:],
        pixel_size,
        defocus_u=defocus,
        voltage_kv=voltage_kv,
        cs_mm=cs_mm,
        b_factor=b_factor,
    )
    image = np.fft.irfft2(np.fft.rfft2(data) * ctf, s=data.shape[-2:])
    return image - image.mean(axis=(-2, -1), keepdims=True)


def particle_template(
    projection: np.ndarray, image: np.ndarray, pixel_size: float
) -> tuple[np.ndarray, float, float]:
    """A particle as `image` (H, W) at `pixel_size` Å/px shows it: `projection` (..., b, b)
    (`projection.reference_projection`: one per view) through the CTF whose defocus is
    fitted to the image's Thon rings (`estimate_defocus`). Returns (templates (..., b, b)
    float64, each zero mean; that defocus in Å; the fit's correlation, below `RINGS_SEEN`
    a guess)."""
    defocus, correlation = estimate_defocus(image, pixel_size)
    return image_through_ctf(projection, pixel_size, defocus), defocus, correlation
