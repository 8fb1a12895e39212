"""The one path of a micrograph from file to outputs: `read_prepared` (read, bin, noise
estimate) → `denoise_prepared` (the model stage) → `write_results` (statistics, outputs).
`denoise` and `batch` run them in turn (`process_micrograph`); the live daemon runs the
same three functions as the stages of its pipeline, so all three commands give the same
outputs for the same model and settings."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamdenoise import __version__
from streamdenoise.engine.profiling import stage
from streamdenoise.errors import MicrographError
from streamdenoise.io import read_micrograph
from streamdenoise.io.picks import write_box, write_coordinates_star
from streamdenoise.model.inference import Denoised
from streamdenoise.model.modelfile import model_digest
from streamdenoise.model.pipeline import DenoiseSettings, Prepared, denoise_prepared, prepare
from streamdenoise.outputs import (
    PICK_FOLDERS,
    OutputLayout,
    pick_frames,
    write_micrograph_outputs,
)
from streamdenoise.physics.binning import binned_to_input
from streamdenoise.physics.ctf import RINGS_SEEN, particle_template
from streamdenoise.physics.density import load_reference
from streamdenoise.physics.projection import reference_projection, sphere_projection
from streamdenoise.stats.guard import GuardReport
from streamdenoise.stats.readiness import (
    MicrographStatistics,
    ReadinessThresholds,
    micrograph_statistics,
)
from streamdenoise.watch.journal import params_hash


def processing_params_hash(
    model_path: Path,
    settings: DenoiseSettings,
    options: OutputOptions,
    *,
    input_pixel_size: float | None,
    suffix: str,
    estimated_diameter: bool = False,
) -> str:
    """The journal's parameter hash, of everything that changes a micrograph's outputs:
    the model file's bytes, the denoising settings, the input pixel size, the output
    options (float16, OME-Zarr, thumbnails, sidecar, picks frame, and the statistics'
    particle diameter and thresholds, which make the picks) and the suffix. The daemon and
    the batch runner agree on it, so a micrograph done by one is skipped by the other, and
    a restart with other options redoes what they change (a readiness reference among
    them, which picks the candidates). `estimated_diameter`: the
    daemon estimates the diameter from the session's first micrographs (the hash says
    "estimated", not the value, so that the estimate arriving, or differing after a
    restart, redoes nothing already written)."""
    # The reference only when there is one: sessions hashed before it existed stay done.
    reference = {} if options.reference is None else {"reference": str(options.reference)}
    return params_hash(
        **reference,
        model=model_digest(model_path),
        bin=settings.bin_factor,
        pixel_size=settings.target_pixel_size,
        input_pixel_size=input_pixel_size,
        tile=settings.tile,
        overlap=settings.overlap,
        guard=settings.guard,
        background_scale=settings.background_scale,
        float16=options.float16,
        zarr=options.zarr,
        thumbnails=options.thumbnails,
        sidecar=options.sidecar,
        suffix=suffix,
        picks_frame=options.picks_frame,
        diameter="estimated" if estimated_diameter else options.diameter_angstrom,
        thresholds=asdict(options.thresholds),
    )


DEFAULT_DIAMETER = 150.0
"""Particle diameter (Å) assumed for the statistics when none is given."""


@dataclass(frozen=True)
class OutputOptions:
    """What to write besides the denoised MRC. `model_label` names the model in sidecars;
    `diameter_angstrom` and `thresholds` drive the picking-readiness statistics (None:
    no statistics and no candidate coordinates); `picks_frame`: the pixels candidate
    coordinates are in, "input" (the input micrograph's, default), "denoised" or "both";
    `sidecar`: write the JSON sidecar (the journal's records need it); `diameter_source`:
    how the diameter was chosen ("given", "reference NAME", "estimated from N
    micrographs", "default…"), written to the sidecar's readiness record; `reference`: a
    density map (or model) whose image through each micrograph's CTF picks the candidates
    (`reference_template`) instead of the difference of Gaussians."""

    float16: bool = False
    zarr: bool = True
    thumbnails: bool = True
    model_label: str = "default"
    diameter_angstrom: float | None = DEFAULT_DIAMETER
    thresholds: ReadinessThresholds = field(default_factory=ReadinessThresholds)
    picks_frame: str = "input"
    sidecar: bool = True
    diameter_source: str = "default"
    reference: Path | None = None

    @property
    def denoiser_null(self) -> bool:
        """Whether the statistics need `Denoised.null`, the DoG's noise calibration (a
        reference's matched filter on the raw image is judged against its own decoys)."""
        return self.diameter_angstrom is not None and self.reference is None

    def __post_init__(self) -> None:
        pick_frames(self.picks_frame)  # raises ValueError for an unknown frame


@dataclass(frozen=True)
class Results:
    """Outputs written for one micrograph ({kind: path}), its statistics (without the
    candidate arrays, so they can be kept for the session at no memory cost), its working
    pixel size in Å/px and the do-no-harm guard's report (None: no guard ran)."""

    outputs: dict[str, str]
    statistics: MicrographStatistics | None
    pixel_size: float
    guard: GuardReport | None


def read_prepared(
    path: Path,
    model_pixel_size: float,
    settings: DenoiseSettings,
    input_pixel_size: float | None = None,
) -> Prepared:
    """Read a micrograph strictly and bin it to the working pixel size (raises
    MicrographError naming the file when it cannot be used)."""
    with stage("read"):
        micrograph = read_micrograph(path, pixel_size=input_pixel_size)
    try:
        return prepare(micrograph.data, micrograph.pixel_size, model_pixel_size, settings)
    except ValueError as error:  # e.g. a constant image cannot be normalised
        raise MicrographError(path, str(error)) from error


def write_results(
    layout: OutputLayout,
    source: Path,
    prepared: Prepared,
    result: Denoised,
    seconds: float,
    options: OutputOptions,
    device: torch.device | str | None = None,
) -> Results:
    """Compute the picking statistics (their filters on `device`, the model's; default the
    CPU) and write every output of one denoised micrograph (the sidecar records the
    do-no-harm guard's verdict)."""
    denoised = result.image
    record: dict[str, object] = {
        "noise_sigma": prepared.sigma,
        "guard": None if result.guard is None else result.guard.to_dict(),
        "shape": list(denoised.shape),
        "processing_seconds": seconds,
        "model": options.model_label,
        "streamdenoise": __version__,
    }
    statistics = None
    if options.diameter_angstrom is not None:
        template, detector = None, None
        if options.reference is not None:
            with stage("reference template"):
                template, defocus, rings = reference_template(
                    options.reference, prepared, options.diameter_angstrom
                )
            seen = "" if rings >= RINGS_SEEN else ", Thon rings not seen: a guess"
            detector = (
                f"reference {options.reference.name} through the CTF at "
                f"{defocus / 1e4:.2f} µm defocus (fitted, ring correlation {rings:.2f}{seen})"
            )
        with stage("statistics"):
            summed = prepared.input_pixels  # the raw image in counts (`input_pixels`)
            statistics = micrograph_statistics(
                prepared.image * summed,
                denoised,
                prepared.pixel_size,
                options.diameter_angstrom,
                options.thresholds,
                device,
                prepared.image_noise.scaled(summed),
                result.null,
                template,
                lambda: packed_field_template(
                    prepared.image, prepared.pixel_size, options.diameter_angstrom
                ),
            )
        record["readiness"] = {
            **statistics.to_dict(),
            "diameter_source": options.diameter_source,
            "candidate_detector": detector or statistics.candidate_detector,
        }
    outputs = write_micrograph_outputs(
        layout,
        source,
        prepared.image,
        denoised,
        prepared.pixel_size,
        record,
        float16=options.float16,
        zarr=options.zarr,
        thumbnails=options.thumbnails,
        sidecar=options.sidecar,
    )
    if statistics is not None:
        with stage("write picks"):
            for frame in pick_frames(options.picks_frame):
                outputs.update(write_picks(layout, source, prepared, statistics, frame))
        empty = np.zeros((0, 2))
        statistics = replace(statistics, coordinates=empty, scores=empty[:, 0])
    return Results(outputs, statistics, prepared.pixel_size, result.guard)


@lru_cache(maxsize=4)
def _reference_projection(path: Path, diameter_angstrom: float, pixel_size: float) -> np.ndarray:
    """`reference_projection` of the reference at `path`, cached for the session."""
    return reference_projection(load_reference(path), diameter_angstrom, pixel_size)


def packed_field_template(
    image: np.ndarray, pixel_size: float, diameter_angstrom: float
) -> tuple[np.ndarray, str] | None:
    """A generic round particle as `image` (H, W) at `pixel_size` Å/px shows it: a solid
    sphere of `diameter_angstrom` (`sphere_projection`) through the CTF fitted to the
    image, and what it is, for `micrograph_statistics`' second opinion on packed fields.
    None where the fit sees no Thon rings (`RINGS_SEEN`: the template would be a guess)."""
    try:
        sphere, defocus, rings = particle_template(
            sphere_projection(diameter_angstrom, pixel_size), image, pixel_size
        )
    except ValueError:  # too few Thon-ring frequencies at this pixel size
        return None
    if rings < RINGS_SEEN:
        return None
    return sphere, (
        f"solid sphere of {diameter_angstrom:.0f} Å through the CTF at "
        f"{defocus / 1e4:.2f} µm defocus (fitted)"
    )


def reference_template(
    reference: Path, prepared: Prepared, diameter_angstrom: float
) -> tuple[np.ndarray, float, float]:
    """The reference at `reference` as this micrograph shows a particle
    (`particle_template` of its `reference_projection`, on the binned image). Returns
    (templates (K, b, b), one per view, at the working pixel size; the fitted defocus in
    Å; the fit's correlation)."""
    projection = _reference_projection(reference, diameter_angstrom, prepared.pixel_size)
    return particle_template(projection, prepared.image, prepared.pixel_size)


def write_picks(
    layout: OutputLayout,
    source: Path,
    prepared: Prepared,
    statistics: MicrographStatistics,
    frame: str,
) -> dict[str, str]:
    """Write the candidate coordinates as RELION STAR and .box (box 1.5 diameters) in the
    pixels of `frame`: "input" (the input micrograph's, scaled from the binned frame) or
    "denoised"; returns {kind: path relative to OUT}."""
    coordinates, pixel_size = statistics.coordinates, prepared.pixel_size
    if frame == "input":
        binned = prepared.image.shape
        coordinates = binned_to_input(coordinates, binned, prepared.input_shape)
        pixel_size *= binned[1] / prepared.input_shape[1]
    box = max(1, round(1.5 * statistics.diameter_angstrom / pixel_size))
    star, box_file = layout.picks(source, ".star", frame), layout.picks(source, ".box", frame)
    write_coordinates_star(star, coordinates, statistics.scores)
    write_box(box_file, coordinates, box)
    folder = PICK_FOLDERS[frame]
    return {f"{folder}_star": layout.record(star), f"{folder}_box": layout.record(box_file)}


def process_micrograph(
    path: Path,
    model: nn.Module,
    model_pixel_size: float,
    settings: DenoiseSettings,
    layout: OutputLayout,
    options: OutputOptions,
    *,
    input_pixel_size: float | None = None,
    device: torch.device | str | None = None,
) -> Results:
    """Read, denoise and write one micrograph in turn (`denoise`, and `batch`'s task)."""
    start = time.perf_counter()
    prepared = read_prepared(path, model_pixel_size, settings, input_pixel_size)
    null = options.denoiser_null
    denoised = denoise_prepared([prepared], model, settings, device, null=null)[0]
    seconds = time.perf_counter() - start
    return write_results(layout, path, prepared, denoised, seconds, options, device)
