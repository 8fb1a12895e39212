"""The command-line options, each declared once and shared by every command that takes it.

An option backed by a setting (`streamdenoise.config`) is named after its key
(`settle_seconds` ↔ `--settle-seconds`), is None when not given (the file or the
default applies), and shows that default and its key in `--help`."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from streamdenoise.config import OUTPUT_KEYS, TABLE_OF, TABLES, bare_type

KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY
Command = TypeVar("Command", bound=Callable[..., Any])


def positive(value: float | None) -> float | None:
    """Typer callback: refuse a number that is not > 0 (None: not given)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


OPTIONS: dict[str, inspect.Parameter] = {}
"""The option of each setting that has one, by key (= parameter name)."""


def _declare(key: str, help: str, flags: str | None = None, **kwargs: Any) -> None:
    """Declare the option of the setting `key`: named after it (`--settle-seconds`, a
    `--guard/--no-guard` pair for true or false) unless `flags` (comma-separated) says
    otherwise; None when not given; its --help shows the default and the file key, in the
    panel of its table."""
    table = TABLE_OF[key]
    field = TABLES[table].model_fields[key]
    kind = bare_type(field.annotation)
    if typing.get_origin(kind) is tuple:  # globs: a repeatable option
        kind = list[typing.get_args(kind)[0]]
    elif typing.get_origin(kind) is typing.Literal:
        kind = str
    name = "--" + key.replace("_", "-")
    flags = flags or (f"{name}/--no-{name[2:]}" if kind is bool else name)
    default = field.default
    if isinstance(default, bool):  # a --yes/--no pair: the side that is the default
        shown: bool | str = flags.split("/")[0 if default else 1]
    elif isinstance(default, tuple):
        shown = ", ".join(default) or "none"
    else:
        shown = False if default is None else str(default) or '""'
    option = typer.Option(
        *flags.split(","),
        help=f"{help} (file: {table}.{key})",
        show_default=shown,
        rich_help_panel=f"Settings \\[{table}]",
        **kwargs,
    )
    annotation = Annotated[kind | None, option]
    OPTIONS[key] = inspect.Parameter(key, KEYWORD_ONLY, annotation=annotation, default=None)


def with_settings(*keys: str) -> Callable[[Command], Command]:
    """Add the options of the settings `keys` to a typer command, which takes them in
    `**given` ({key: value or None})."""

    def add(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*own, *(OPTIONS[key] for key in keys)]
        )
        return command

    return add


Config = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (systemd/example.toml); flags override it."),
]
_declare("out_dir", "Output directory (watch: default DIR_streamdenoise).", flags="--out,-o")
_declare(
    "state_dir", "Journal, status.json and lock, on a local disk (default: the output directory)."
)
_declare("model", "Model file (default: the one shipped).")
_declare(
    "device",
    "auto (first GPU if usable, else CPU), cpu, cuda or cuda:N; a requested GPU that "
    "cannot be used is an error.",
)
_declare("include", "Glob of files to take (repeatable).")
_declare("exclude", "Glob of files to skip (repeatable).")
_declare("polling", "Poll (default: on network mounts only).")
_declare(
    "settle_seconds",
    "Seconds a file's size and mtime must be stable (×3 on network mounts).",
    callback=positive,
)
_declare(
    "timeout_seconds",
    "Seconds after which a never-complete file is quarantined.",
    callback=positive,
)
_declare(
    "rescan_interval",
    "Seconds between rescans for files the events missed (and for files sent back by "
    "quarantine --retry).",
    callback=positive,
)
_declare("order", "Which micrographs first: oldest, newest, alternate.")
_declare(
    "adapt_after",
    "Adapt the model to this session after its first N micrographs (0: off; N ≥ 2): a "
    "background thread fine-tunes a copy (blind-spot loss) and swaps it in only if a "
    "picking criterion on the last quarter, held out, beats the model and no denoising "
    "by more than 0.015 (its own error); once per session; weights in "
    "STATE/adapted_model.pt. Measured results: docs/model.md.",
    min=0,
)
_declare("adapt_steps", "Steps of --adapt-after.", min=1)
_declare("bin", "Fourier-bin inputs by this factor.", min=1)
_declare(
    "pixel_size",
    "Working pixel size in Å: bin to about it (default: the model's, 4 Å for the shipped "
    "one; never upsamples).",
    callback=positive,
)
_declare(
    "input_pixel_size",
    "Pixel size of the inputs in Å, for TIFFs or MRC headers without one.",
    callback=positive,
)
_declare("batch_size", "Tiles per network call (default: 1 on CPU, 8 on GPU).", min=1)
_declare("tile", "Largest tile side (working px).", min=16)
_declare("overlap", "Tile overlap (working px).", min=0)
_declare(
    "precision",
    "The network's precision: auto (bfloat16 where the device computes it natively: a GPU "
    "that supports it, or a CPU with AMX or AVX512-BF16, 3.4× faster on this project's "
    "test CPU; else float32), float32 or bfloat16. The Tweedie step and the guard run in "
    "float32 either way.",
)
_declare(
    "compile",
    "torch.compile the model: slower start, faster per micrograph (default: when this "
    "machine can, Triton on a GPU or a C++ compiler on a CPU in float32; eager if that "
    "fails).",
)
_declare(
    "guard",
    "Do-no-harm guard: keep the binned input where the model's residual is not noise, "
    "and say so in the sidecar and the dashboard.",
)
_declare(
    "flatten_background",
    "Subtract the output's background low-pass of this σ in Å (ice gradients; e.g. 3× "
    "the particle diameter). Off by default: it did not change picking (RESULTS.md).",
    callback=positive,
)
_declare("suffix", "Appended to output file stems.")
_declare("float16", "Precision of the denoised MRCs.", flags="--float16/--float32")
_declare("zarr", "Write OME-Zarr groups.")
_declare(
    "picks_frame",
    "Pixels of the candidate coordinates: input (OUT/picks/, OUT/coordinates.star), "
    "denoised (OUT/picks_denoised/, OUT/coordinates_denoised.star) or both.",
)
_declare(
    "mirror",
    "denoise: write what watch and batch write, in their layout: OUT/denoised/<path below "
    "the inputs' common folder><suffix>.mrc with its .json sidecar, OUT/picks/, "
    "OUT/thumbnails/, OME-Zarr and the STAR lists (--flat: OUT/<stem><suffix>.mrc only).",
    flags="--mirror/--flat",
)
_declare("voltage_kv", "Voltage (kV), STAR optics table.")
_declare("cs_mm", "Spherical aberration (mm), STAR optics table.")
_declare("amplitude_contrast", "Amplitude contrast, STAR optics.")
_declare(
    "optics_from",
    "Copy the optics table from this micrographs STAR (e.g. RELION's corrected_"
    "micrographs.star) instead of --voltage-kv, --cs-mm and --amplitude-contrast; each "
    "micrograph keeps its optics group, by file name.",
)
_declare(
    "relion_project",
    "RELION project directory: STAR paths are written relative to it (default: absolute).",
)
_declare(
    "particle_diameter",
    "Particle diameter in Å, for the picking statistics (default: from --reference, else "
    "watch estimates it from the first 5 micrographs, 150 until then).",
    callback=positive,
)
_declare(
    "reference",
    "Density map (.mrc/.map) or atomic model (.pdb/.cif) of the particle: the picking "
    "statistics use its diameter (unless --particle-diameter is given) and pick their "
    "candidates with it: its views (its projections averaged about their centre, grouped "
    "by shape: one for a globular particle, three for an elongated one) through each "
    "micrograph's CTF (defocus fitted to the Thon rings), matched on the raw micrograph, "
    "instead of the built-in blob picker (docs/picking.md).",
)
_declare("statistics", "Compute picking-readiness statistics and write candidate coordinates.")
_declare(
    "headless",
    "Log lines instead of the live dashboard (default: headless without a terminal).",
    flags="--headless/--dashboard",
)
_declare("status_interval", "Seconds between headless summary lines.", callback=positive)

DENOISE = ("model", "device", "input_pixel_size", "bin", "pixel_size", "batch_size", "tile")
DENOISE += ("overlap", "precision", "guard", "flatten_background", "out_dir", "suffix", "float16")
"""The options of `denoise`, and of `batch` and `watch` too."""
SESSION = ("state_dir", *OUTPUT_KEYS)
"""The options of the session outputs, of `batch` and `watch`."""
WATCH = ("include", "exclude", "polling", "settle_seconds", "timeout_seconds", "order")
WATCH += ("rescan_interval", "adapt_after", "adapt_steps", "compile", "headless")
WATCH += ("status_interval",)
"""The options of `watch` alone."""


# The options of one command each (and the count of `simulate` and `demo`).
Count = Annotated[int, typer.Option("-n", "--count", min=1, help="Number of micrographs.")]
SimulateOut = Annotated[Path, typer.Argument(help="Output directory of the simulated session.")]
SimulateDetector = Annotated[
    str,
    typer.Option(help="Detector geometry: falcon4i (4096²), k3 (5760×4092), small (1024²)."),
]
SimulateDetectorPixelSize = Annotated[
    float | None,
    typer.Option(callback=positive, help="Detector pixel size in Å (default: typical)."),
]
SimulateBinning = Annotated[
    int, typer.Option("--bin", min=1, help="Write micrographs binned by this integer factor.")
]
SimulateDose = Annotated[float, typer.Option(callback=positive, help="Total dose in e⁻/Å².")]
SimulateDefocus = Annotated[str, typer.Option(help="Defocus range MIN:MAX in µm (underfocus).")]
SimulateIceThickness = Annotated[
    str, typer.Option(help="Mean ice thickness range MIN:MAX in Å, drawn per micrograph.")
]
SimulateParticleDensity = Annotated[
    float, typer.Option(min=0, help="Mean particles per µm² (each micrograph draws 0.5–1.5×).")
]
SimulateCarbonEdgeFraction = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Share of micrographs with a carbon edge.")
]
SimulateAggregateFraction = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Share of particles in aggregates.")
]
SimulateEmptyFraction = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Share of each field without particles.")
]
SimulateReference = Annotated[
    Path | None, typer.Option(help="MRC map or PDB/mmCIF model (default: built-in CFTR).")
]
SimulateSeed = Annotated[int, typer.Option(help="Random seed; the same seed, the same session.")]
SimulateRate = Annotated[
    float | None,
    typer.Option(callback=positive, help="Write one micrograph every RATE seconds."),
]
SimulateWriteMode = Annotated[
    str,
    typer.Option(
        help="With --rate: direct, chunked (slow growing writes), rename (write a hidden "
        "temporary, then rename), or mixed (cycle through the three)."
    ),
]
SimulateFloat16 = Annotated[bool, typer.Option("--float16/--float32", help="Precision.")]
DenoiseFiles = Annotated[list[Path], typer.Argument(help="Micrographs (MRC or TIFF).")]
TrainMicrographs = Annotated[list[Path], typer.Argument(help="Training micrographs (MRC/TIFF).")]
TrainModelOut = Annotated[Path, typer.Option("--model-out", help="Model file to write.")]
TrainReference = Annotated[
    Path | None, typer.Option(help="Reference map (MRC) or model (PDB/mmCIF): guidance.")
]
TrainInit = Annotated[
    Path | None,
    typer.Option(
        help="Adapt this model file to the given micrographs (a session's own, noisy "
        "only) instead of training from scratch: fine-tunes a copy with the blind-spot "
        "loss on all but the last quarter, and writes --model-out only if a picking "
        "criterion on that quarter (see --particle-diameter) beats both the model and no "
        "denoising by more than 0.015, its own error (else exits 1). Works at the model's "
        "pixel size."
    ),
]
TrainParticleDiameter = Annotated[
    float, typer.Option(min=10.0, help="Particle diameter in Å; the --init criterion's.")
]
TrainCleanDir = Annotated[
    Path | None,
    typer.Option(help="Noise-free <stem>_clean.mrc targets (a simulated ground_truth/)."),
]
TrainSteps = Annotated[int, typer.Option(min=1, help="Optimiser steps.")]
TrainBatch = Annotated[int, typer.Option(min=1, help="Crops per step.")]
TrainCrop = Annotated[int, typer.Option(min=8, help="Crop side in working pixels.")]
TrainLearningRate = Annotated[float, typer.Option(min=0.0, help="Adam learning rate.")]
TrainPixelSize = Annotated[float, typer.Option(callback=positive, help="Working pixel size in Å.")]
TrainBaseChannels = Annotated[int, typer.Option(min=1, help="U-Net width of the first level.")]
TrainTemplateDefocus = Annotated[
    float | None, typer.Option(help="Apply a CTF at this defocus (µm) to the templates.")
]
TrainGuidanceAway = Annotated[
    bool, typer.Option("--guidance-away", help="The public code's guidance sign (compare).")
]
TrainResume = Annotated[
    bool, typer.Option("--resume", help="Continue from MODEL_OUT.ckpt after a stop.")
]
TrainSeed = Annotated[int, typer.Option(help="Random seed.")]
WatchWatchDir = Annotated[
    Path | None,
    typer.Argument(help="Directory where micrographs appear (or watch_dir in \\[watch])."),
]
DaemonOut = Annotated[Path, typer.Argument(help="The daemon's output directory.")]
StatusFollow = Annotated[bool, typer.Option("--follow", "-f", help="Keep showing updates.")]
QuarantineRetry = Annotated[
    bool, typer.Option("--retry", help="Put every quarantined file back in the queue.")
]
DemoOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Keep the demo session here (default: a temporary folder, removed at the end).",
    ),
]
DemoRate = Annotated[float, typer.Option(min=0.1, help="Seconds between micrographs.")]
BatchInputs = Annotated[
    list[Path],
    typer.Argument(help="Micrographs, or directories searched for *.mrc, *.tif, *.tiff."),
]
BatchScheduler = Annotated[
    str | None, typer.Option(help="Address of a running Dask scheduler (tcp://host:8786).")
]
BatchWorkers = Annotated[
    int | None,
    typer.Option(help="Local worker processes (default: one per CPU core, or per GPU)."),
]
BatchThreadsPerWorker = Annotated[
    int, typer.Option(help="Micrographs each local worker processes at once.")
]
ReportHtml = Annotated[
    Path | None, typer.Option("--html", help="HTML file to write (default OUT/report.html).")
]
