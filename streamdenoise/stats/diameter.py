"""The particle diameter from the data or from a reference (issue 15, part 2).

Pure: arrays in, a diameter in Å out.

From the data (`estimate_diameter`), on a few denoised micrographs at the working pixel
size (particles dark):

1. Scale space. The difference of Gaussians of the inverted image, σ and 1.6·σ, is the
   picker's own detector (`blob_response`) and is scale-normalised (≈ 0.6·σ²·∇²G), so a
   dark disk gives the same peak response at its own scale whatever its size. It is taken
   at `SCALES` log-spaced diameters D (σ = D/(2√2)) from `min_diameter` to
   `max_diameter`; each layer is also read in units of its own robust std (z).
2. Peaks. Maxima over space (3×3) and scale (the neighbouring layers) of the response
   whose z is at least `PEAK_Z`, none within half its own diameter of a stronger one; the
   same for the negated response (bright blobs: decoys, since background texture is as
   likely bright as dark and particles are dark). The dark peaks are cut at the z where
   the estimated false-discovery rate against the decoys is `PEAK_FDR` (noise alone gives
   none), at most `PEAKS_PER_IMAGE` per micrograph, strongest first. Their scales give a
   first guess (the median), the blob scale, which depends on the particle's shape (a uniform
   ball's blob scale is its diameter; a hollow shell's or a protein with a dense core's is
   70–85 % of it).
3. Extent. The images around the peaks, averaged and rotationally averaged, give the
   particle's mean radial profile out to 1.5 first guesses (background: the median of the
   outer fifth). Its darkness (background − profile) falls from the darkest radius
   outwards; the diameter is twice the radius where it first drops to `EDGE_LEVEL` of its
   maximum (linear interpolation). That measures where the particle ends rather than how
   big its core is, as a reference's diameter does (`Scatterers.diameter`: the 99 %
   weight sphere). Going outwards from the darkest radius, not inwards from the box's
   edge, keeps the neighbours of a crowded field (a dark ring at one spacing) out.
   That edge lies inside the reference's diameter (the particle's faint rim is below
   `EDGE_LEVEL`): by 6–22 % (median 13 %) on the calibration set, simulated 1024²
   micrographs at 4 Å/px of five structures (6MSM, D = 129 Å; `random_shape` shells of
   124 and 210 Å, blobs of 76 and 281 Å) at 15 and 40 e⁻/Å² (seed 7) denoised by the
   default model, pooled in pairs, before the decoy cut of step 2; so it is scaled by
   `EXTENT_SCALE` = 1.1.

The uncertainty is the spread of the per-micrograph extents (the half-range of the middle
two thirds), at least 5 % of the estimate. The estimate is `confident` when at least two
micrographs and `CONFIDENT_PEAKS` peaks went in and the spread is at most
`CONFIDENT_SPREAD`; otherwise it is a guess, and the daemon keeps its default.

Measured (tests/test_stats_diameter.py, seeds 11 and 12, held out; one micrograph at 15
and one at 40 e⁻/Å²):

    structure      diameter   estimate      confident   peaks
    shell             124 Å   128 ± 6 Å     yes         211     +3 %
    shell             210 Å   211 ± 11 Å    yes         268     +0 %
    blobs             281 Å   273 ± 14 Å    yes         164     −3 %
    blobs              76 Å    67 Å         no            7    −12 %
    6MSM (CFTR)       129 Å    78 Å         no           27    −40 %

On 6MSM, and on the demo's micrographs of it, few dark peaks stand out from the bright
decoys: the particle's dense core (≈ 60 Å) and its domains are what the denoised image
shows, and their mean profile ends at ≈ 70 Å of the reference's 129 Å, so no estimate is
confident there and the statistics keep the default. On the 19 real apoferritin
micrographs (1.5 Å/px, D ≈ 120 Å; raw, not denoised, binned to 4.5 and 9 Å/px, in groups
of five) no estimate was confident: 2–20 peaks per group, estimates 87–135 Å; one group
at 4.5 Å/px reached 31 peaks at 87 Å, which is why `CONFIDENT_PEAKS` is 40, not 30.

From a reference map or model, the daemon takes `Scatterers.diameter`
(`streamdenoise.physics.density`): twice the radius holding 99 % of the scattering weight
about the centre of mass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamdenoise.stats.filters import fast_fft_length
from streamdenoise.stats.readiness import fdr_threshold

SCALES = 24
"""Diameters tried between `min_diameter` and `max_diameter` (log-spaced)."""
SURROUND = 1.6
"""Ratio of the DoG's surround σ to its centre σ (as `blob_response`)."""
PEAK_Z = 2.0
"""Smallest robust z of a scale-space peak taken as a particle."""
PEAK_FDR = 0.5
"""Dark peaks are cut where the bright ones above the cut are at most this share of them
(`fdr_threshold`, as the readiness candidates)."""
PEAKS_PER_IMAGE = 150
"""Strongest peaks kept per micrograph."""
CANDIDATE_LIMIT = 2000
"""Dark and bright peaks ranked per micrograph before the cut."""
EDGE_LEVEL = 0.15
"""The particle's edge: where its mean darkness falls to this share of its maximum."""
EXTENT_SCALE = 1.1
"""The diameter: this times twice the edge radius (calibrated, see the module docstring)."""
CONFIDENT_PEAKS = 40
"""Peaks needed (all micrographs together) for a confident estimate."""
CONFIDENT_SPREAD = 0.15
"""… and the largest relative spread between micrographs."""


@dataclass(frozen=True)
class DiameterEstimate:
    """A particle diameter estimated from micrographs.

    diameter_angstrom: the estimate, Å; uncertainty_angstrom: its spread between
    micrographs, Å (see the module docstring); blob_angstrom: the first guess from the
    scale of the peaks, Å; peaks: particles that went in; micrographs: images used;
    confident: enough peaks and micrographs agreeing (otherwise treat it as a guess).
    """

    diameter_angstrom: float
    uncertainty_angstrom: float
    blob_angstrom: float
    peaks: int
    micrographs: int
    confident: bool

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return {
            "diameter_angstrom": round(self.diameter_angstrom, 1),
            "uncertainty_angstrom": round(self.uncertainty_angstrom, 1),
            "blob_angstrom": round(self.blob_angstrom, 1),
            "peaks": self.peaks,
            "micrographs": self.micrographs,
            "confident": self.confident,
        }


def _robust_z(layer: np.ndarray) -> np.ndarray:
    """(H, W) in units of its robust std about its median (float32)."""
    median = float(np.median(layer))
    spread = 1.4826 * float(np.median(np.abs(layer - median)))
    return ((layer - median) / max(spread, 1e-12)).astype(np.float32)


def _local_max(layer: np.ndarray) -> np.ndarray:
    """(H, W): the maximum over each pixel's 3×3 neighbourhood (edges padded with −inf; by
    rows, then columns)."""
    padded = np.pad(layer, 1, mode="constant", constant_values=-np.inf)
    rows = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    return np.maximum(np.maximum(rows[:-2], rows[1:-1]), rows[2:])


Peaks = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Scale-space peaks: coordinates (N, 2) (x, y) pixels, diameters (N,) pixels, z (N,)."""


def scale_space_peaks(image: np.ndarray, diameters: np.ndarray) -> tuple[Peaks, Peaks]:
    """Scale-space maxima of the dark-blob response of `image` (H, W), and of the
    bright-blob response (its negative: the decoys, as background texture is as likely
    bright as dark).

    diameters: (S,) increasing, pixels (σ = D/(2√2) each). Returns (dark, bright), each
    (coordinates (N, 2) (x, y) pixels, diameters (N,) pixels, interpolated between the
    layers in log D, z (N,) the peak's robust z in its layer ≥ `PEAK_Z`), for the maxima
    over 3×3 pixels and the neighbouring scales (never the first or last scale) that lie
    at least half their diameter from the edge. One forward FFT, one inverse per scale;
    three layers in memory at a time.
    """
    data = -np.asarray(image, dtype=np.float64)
    data -= data.mean()
    sigmas = np.asarray(diameters, dtype=np.float64) / (2 * math.sqrt(2))
    pad = min(int(3 * SURROUND * sigmas.max()) + 1, *data.shape)
    widths = [(pad, fast_fft_length(n + 2 * pad) - n - pad) for n in data.shape]
    padded = np.pad(data, widths, mode="reflect")
    spectrum = np.fft.rfft2(padded)
    inside = (slice(pad, pad + data.shape[0]), slice(pad, pad + data.shape[1]))
    step = math.log(diameters[1] / diameters[0]) if len(diameters) > 1 else 0.0

    squared = np.fft.fftfreq(padded.shape[0])[:, None] ** 2
    squared = squared + np.fft.rfftfreq(padded.shape[1])[None, :] ** 2  # |k|², cycles/px

    def layer(sigma: float) -> np.ndarray:
        # the DoG's transfer function (not `gaussian_transfer`'s cache: 2·SCALES σ once)
        transfer = np.exp(-2 * math.pi**2 * sigma**2 * squared)
        transfer -= np.exp(-2 * math.pi**2 * (SURROUND * sigma) ** 2 * squared)
        return np.fft.irfft2(spectrum * transfer, s=padded.shape)[inside].astype(np.float32)

    found: dict[float, list[tuple[np.ndarray, ...]]] = {1.0: [], -1.0: []}
    below, here = layer(sigmas[0]), layer(sigmas[1])
    for index in range(1, len(sigmas) - 1):
        above = layer(sigmas[index + 1])
        z = _robust_z(here)
        border = int(diameters[index] / 2)
        for sign, peaks in found.items():
            low, middle, high = sign * below, sign * here, sign * above
            maxima = middle >= _local_max(middle)
            maxima &= (middle > _local_max(low)) & (middle > _local_max(high))
            maxima &= sign * z >= PEAK_Z
            maxima[:border], maxima[-border:] = False, False
            maxima[:, :border], maxima[:, -border:] = False, False
            ys, xs = np.nonzero(maxima)
            a, b, c = low[ys, xs], middle[ys, xs], high[ys, xs]
            curvature = a - 2 * b + c  # < 0 at a maximum
            offset = np.clip(0.5 * (a - c) / np.minimum(curvature, -1e-12), -0.5, 0.5)
            log_diameter = math.log(diameters[index]) + offset * step
            peaks.append((xs, ys, np.exp(log_diameter), sign * z[ys, xs]))
        below, here = here, above

    def joined(peaks: list[tuple[np.ndarray, ...]]) -> Peaks:
        if not peaks:
            return np.empty((0, 2)), np.empty(0), np.empty(0)
        xs, ys, sizes, zs = (np.concatenate(parts) for parts in zip(*peaks, strict=True))
        coordinates = np.stack([xs, ys], axis=1).astype(np.float64)
        return coordinates, sizes.astype(np.float64), zs.astype(np.float64)

    return joined(found[1.0]), joined(found[-1.0])


def strongest_separated(
    coordinates: np.ndarray, diameters: np.ndarray, z: np.ndarray, limit: int
) -> np.ndarray:
    """Indices of at most `limit` peaks, strongest z first, none within half its own
    diameter (pixels) of a stronger one kept. coordinates (N, 2), diameters and z (N,)."""
    kept: list[int] = []
    for i in np.argsort(-z):
        if kept:
            others = coordinates[kept]
            distance = np.hypot(*(others - coordinates[i]).T)
            if np.any(distance < 0.5 * diameters[i]):
                continue
        kept.append(int(i))
        if len(kept) >= limit:
            break
    return np.asarray(kept, dtype=np.int64)


def mean_radial_profile(image: np.ndarray, coordinates: np.ndarray, radius: int) -> np.ndarray:
    """Rotational average (radius + 1,) of the mean of the (2r+1)² boxes of `image` (H, W)
    about `coordinates` (N, 2) (x, y) pixels (rounded; boxes crossing the edge are left
    out): index i is the mean at distance i ± 0.5 px. NaN when no box fits."""
    h, w = image.shape
    total = np.zeros((2 * radius + 1, 2 * radius + 1))
    boxes = 0
    for x, y in np.rint(coordinates).astype(int):
        if radius <= x < w - radius and radius <= y < h - radius:
            total += image[y - radius : y + radius + 1, x - radius : x + radius + 1]
            boxes += 1
    if not boxes:
        return np.full(radius + 1, np.nan)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    ring = np.rint(np.hypot(xx, yy)).astype(int).ravel()
    sums = np.bincount(ring, (total / boxes).ravel())
    return (sums / np.bincount(ring))[: radius + 1]


def profile_extent(profile: np.ndarray) -> float:
    """Particle radius (pixels) from a dark particle's mean radial profile (R + 1,): the
    radius beyond the darkest one where the darkness (background − profile; background the
    median of the outer fifth) first falls to `EDGE_LEVEL` of its maximum, linearly
    interpolated. NaN when the profile has no dark centre or never falls that far."""
    if not np.all(np.isfinite(profile)):
        return math.nan
    background = float(np.median(profile[-max(3, len(profile) // 5) :]))
    darkness = background - profile
    darkest = int(np.argmax(darkness))
    peak = float(darkness[darkest])
    if peak <= 0:
        return math.nan
    level = EDGE_LEVEL * peak
    below = np.nonzero(darkness[darkest:] <= level)[0]
    if not len(below):
        return math.nan
    outer = darkest + int(below[0])
    inner = outer - 1
    fraction = (darkness[inner] - level) / max(darkness[inner] - darkness[outer], 1e-12)
    return float(inner + fraction)


def estimate_diameter(
    images: Sequence[np.ndarray],
    pixel_size: float,
    *,
    min_diameter: float = 40.0,
    max_diameter: float = 450.0,
) -> DiameterEstimate | None:
    """The particle diameter (Å) from a few denoised micrographs (see the module docstring).

    images: (H, W) each, at `pixel_size` Å/px, particles dark; min_diameter,
    max_diameter: the range searched, Å (the upper end is cut to a quarter of the smallest
    image side). Returns None when no image shows a particle (no peak, or no profile with
    an edge).
    """
    if pixel_size <= 0 or not 0 < min_diameter < max_diameter:
        raise ValueError("pixel size and the diameter range must be positive and ordered")
    if not images:
        return None
    side = min(min(np.shape(image)) for image in images)
    top = min(max_diameter / pixel_size, side / 4)
    bottom = min_diameter / pixel_size
    if top <= bottom * 1.5:
        return None
    scales = np.geomspace(bottom, top, SCALES)
    picked = []
    for image in images:
        image = np.asarray(image, dtype=np.float64)
        (coordinates, sizes, z), bright = scale_space_peaks(image, scales)
        keep = strongest_separated(coordinates, sizes, z, CANDIDATE_LIMIT)
        decoys = bright[2][strongest_separated(*bright, CANDIDATE_LIMIT)]
        keep = keep[z[keep] >= fdr_threshold(z[keep], decoys, PEAK_FDR)][:PEAKS_PER_IMAGE]
        picked.append((image, coordinates[keep], sizes[keep]))
    everything = np.concatenate([sizes for _, _, sizes in picked])
    if not len(everything):
        return None
    blob = float(np.exp(np.median(np.log(everything))))
    radius = max(math.ceil(1.5 * blob), 4)
    profiles = [mean_radial_profile(image, coordinates, radius) for image, coordinates, _ in picked]
    weights = [len(coordinates) for _, coordinates, _ in picked]
    usable = [(p, n) for p, n in zip(profiles, weights, strict=True) if n and np.isfinite(p).all()]
    if not usable:
        return None
    pooled = sum(p * n for p, n in usable) / sum(n for _, n in usable)
    extent = 2 * EXTENT_SCALE * profile_extent(pooled)
    if not math.isfinite(extent):
        return None
    singles = np.array([2 * EXTENT_SCALE * profile_extent(p) for p, _ in usable])
    singles = singles[np.isfinite(singles)]
    spread = 0.0
    if len(singles) >= 2:
        low, high = np.percentile(singles, [100 / 6, 500 / 6])
        spread = float(high - low) / 2
    spread = max(spread, 0.05 * extent)
    peaks = int(sum(weights))
    confident = (
        peaks >= CONFIDENT_PEAKS and len(singles) >= 2 and spread <= CONFIDENT_SPREAD * extent
    )
    return DiameterEstimate(
        diameter_angstrom=extent * pixel_size,
        uncertainty_angstrom=spread * pixel_size,
        blob_angstrom=blob * pixel_size,
        peaks=peaks,
        micrographs=len(images),
        confident=confident,
    )
