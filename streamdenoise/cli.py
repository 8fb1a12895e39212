"""Command-line interface: parse, call, print. No science lives here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from streamdenoise import __version__
from streamdenoise.errors import StreamDenoiseError, one_line
from streamdenoise.model.tiling import DEFAULT_MAX_TILE

if TYPE_CHECKING:
    from streamdenoise.outputs import OutputLayout

app = typer.Typer(
    help="Live score-based denoising of cryo-EM micrographs.\n\n"
    "Exit codes: 0 done; 1 some inputs failed (each named on stderr; denoise, batch); "
    "2 a usage or environment error (one line naming the option or file).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"streamdenoise {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Live score-based denoising of cryo-EM micrographs."""


def _range(text: str, name: str) -> tuple[float, float]:
    """Parse "a:b" (or a single number) into (a, b)."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise typer.BadParameter(
            f"expected MIN:MAX numbers, got {text!r}", param_hint=name
        ) from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] > parts[1]:
        raise typer.BadParameter(f"expected MIN:MAX with MIN ≤ MAX, got {text!r}", param_hint=name)
    return parts[0], parts[1]


def _say(kind: str, message: object) -> None:
    """Print "KIND: message" as one line on stderr (never wrapped, no markup from the
    message)."""
    console.print(f"[bold red]{kind}:[/] {escape(one_line(message))}", soft_wrap=True)


def _fail(error: Exception) -> typer.Exit:
    """Print `error` as one line on stderr; returns the exit (code 2) to raise."""
    _say("error", error)
    return typer.Exit(code=2)


def _about(path: Path, error: object) -> str:
    """`error` as a message naming `path` (prefixed unless it already names it)."""
    text = str(error)
    return text if str(path) in text else f"{path}: {text}"


def _positive(value: float | None) -> float | None:
    """Typer callback: refuse a number that is not > 0 (None: not given)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


def _output_directory(path: Path, option: str) -> Path:
    """Create `path` (parents too) and check it is a writable folder; ValueError naming
    it and the option otherwise (a file, a read-only place, /proc …)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: not a folder (give a folder for {option})")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{path}: cannot create it ({error.strerror}); check {option}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot write there (permission denied); check {option}")
    return path


def _output_file(path: Path, option: str) -> Path:
    """Check that the file `path` can be written (its folder is created); ValueError
    naming it and the option otherwise, so long jobs fail before they start."""
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give a file name for {option}")
    if path.exists() and not path.is_file():
        raise ValueError(f"{path}: not a regular file (a device or pipe); give a file for {option}")
    _output_directory(path.parent, option)
    return path


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Output directory of the simulated session.")],
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="Number of micrographs.")] = 10,
    detector: Annotated[
        str,
        typer.Option(help="Detector geometry: falcon4i (4096²), k3 (5760×4092), small (1024²)."),
    ] = "falcon4i",
    pixel_size: Annotated[
        float | None,
        typer.Option(
            callback=_positive,
            help="Physical pixel size in Å (default: the detector's typical one).",
        ),
    ] = None,
    binning: Annotated[
        int, typer.Option("--bin", min=1, help="Write micrographs binned by this integer factor.")
    ] = 1,
    dose: Annotated[float, typer.Option(callback=_positive, help="Total dose in e⁻/Å².")] = 40.0,
    defocus: Annotated[
        str, typer.Option(help="Defocus range MIN:MAX in µm (underfocus), drawn uniformly.")
    ] = "0.8:2.5",
    ice_thickness: Annotated[
        str, typer.Option(help="Mean ice thickness range MIN:MAX in Å, drawn per micrograph.")
    ] = "250:500",
    particle_density: Annotated[
        float, typer.Option(min=0, help="Mean particles per µm² (each micrograph draws 0.5–1.5×).")
    ] = 1800.0,
    carbon_edge_fraction: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of micrographs with a carbon edge in view."),
    ] = 0.2,
    aggregate_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of particles in aggregates.")
    ] = 0.05,
    empty_fraction: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of each micrograph's area without particles."),
    ] = 0.0,
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference: an MRC map or a PDB/mmCIF model (default: built-in CFTR)."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same session.")
    ] = 0,
    rate: Annotated[
        float | None,
        typer.Option(
            callback=_positive,
            help="Write one micrograph every RATE seconds, like a live acquisition.",
        ),
    ] = None,
    write_mode: Annotated[
        str,
        typer.Option(
            help="With --rate: direct, chunked (slow growing writes), rename (write a hidden "
            "temporary, then rename), or mixed (cycle through the three)."
        ),
    ] = "mixed",
    float16: Annotated[bool, typer.Option("--float16", help="Write float16 (mode 12).")] = False,
) -> None:
    """Simulate a cryo-EM session: noisy micrographs plus ground truth beside them."""
    from streamdenoise.acquisition import write_session
    from streamdenoise.physics.density import load_reference
    from streamdenoise.physics.session import SessionSpec

    try:
        spec = SessionSpec(
            count=count,
            seed=seed,
            detector=detector,
            pixel_size=pixel_size,
            binning=binning,
            dose=dose,
            defocus_range=_range(defocus, "--defocus"),
            particle_density=particle_density,
            carbon_edge_fraction=carbon_edge_fraction,
            aggregate_fraction=aggregate_fraction,
            empty_fraction=empty_fraction,
            ice_thickness_range=_range(ice_thickness, "--ice-thickness"),
        )
        scatterers = load_reference(reference)
        # A watched micrographs/ folder may exist already; files of a session may not.
        found = [p for p in (out / "ground_truth", out / "session.json") if p.exists()]
        found += sorted((out / "micrographs").glob("mic_*.mrc"))
        if found:
            raise ValueError(
                f"{out} already holds a simulated session ({found[0].name} …); give a new folder"
            )
        _output_directory(out, "OUT")
    except (StreamDenoiseError, ValueError) as error:
        raise _fail(error) from None
    ny, nx = spec.output_shape
    console.print(
        f"Simulating {count} micrographs of {nx}×{ny} px at "
        f"{spec.detector_pixel_size * binning:.3g} Å/px, {dose:g} e⁻/Å², "
        f"reference {Path(scatterers.source).name} (diameter {scatterers.diameter:.0f} Å)"
    )
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("simulating", total=count)
        try:
            write_session(
                out,
                spec,
                scatterers,
                rate=rate,
                write_mode=write_mode,
                float16=float16,
                on_written=lambda index, path: progress.advance(task),
            )
        except (StreamDenoiseError, ValueError, OSError) as error:
            raise _fail(error) from None
    console.print(f"Wrote {count} micrographs to {out / 'micrographs'} (truth in ground_truth/)")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
    )


DeviceOption = Annotated[
    str,
    typer.Option(
        help="auto (first GPU if usable, else CPU), cpu, cuda or cuda:N. A requested GPU "
        "that cannot be used is an error."
    ),
]
BackgroundOption = Annotated[
    float | None,
    typer.Option(
        "--flatten-background",
        callback=_positive,
        help="Remove slowly varying background (ice gradients, thickness) from the output: "
        "subtract its Gaussian low-pass of this σ in Å (e.g. 3× the particle diameter). "
        "Off by default: it flattens the background by construction, and did not change "
        "picking in benchmarks/RESULTS.md.",
    ),
]
StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where the daemon keeps its journal, status.json and lock, if it was started "
        "with --state-dir (default: OUT).",
    ),
]
GuardOption = Annotated[
    bool | None,
    typer.Option(
        "--guard/--no-guard",
        help="Do-no-harm guard (live mode, default on): keep the binned input unchanged "
        "where the model's residual is not noise (more power than the noise, or "
        "anticorrelated with the output), and say so in the sidecar and the dashboard.",
    ),
]


VoltageOption = Annotated[
    float | None,
    typer.Option("--voltage", help="Acceleration voltage in kV, for the STAR optics table (300)."),
]
CsOption = Annotated[
    float | None,
    typer.Option("--cs", help="Spherical aberration in mm, for the STAR optics table (2.7)."),
]
AmplitudeContrastOption = Annotated[
    float | None,
    typer.Option(help="Amplitude contrast (fraction), for the STAR optics table (0.1)."),
]
OpticsFromOption = Annotated[
    Path | None,
    typer.Option(
        "--optics-from",
        help="Copy the optics table from this micrographs STAR (e.g. RELION's "
        "MotionCorr/jobNNN/corrected_micrographs.star) instead of --voltage, --cs and "
        "--amplitude-contrast; each micrograph keeps its optics group, by file name.",
    ),
]
RelionProjectOption = Annotated[
    Path | None,
    typer.Option(
        "--relion-project",
        help="RELION project directory: paths in the STAR files are written relative to it "
        "(default: absolute paths).",
    ),
]
PicksFrameOption = Annotated[
    str | None,
    typer.Option(
        "--picks-frame",
        help="Pixels of the candidate coordinates: input (the input micrograph's, to extract "
        "from it; OUT/picks/, OUT/coordinates.star), denoised (the denoised micrograph's; "
        "OUT/picks_denoised/, OUT/coordinates_denoised.star) or both. Default: input.",
    ),
]


def _check_optics_from(path: Path | None) -> None:
    """Read an --optics-from STAR now, so that a bad one fails before any work."""
    if path is not None:
        from streamdenoise.io.relion import read_upstream

        read_upstream(path)


@app.command()
def denoise(
    files: Annotated[list[Path], typer.Argument(help="Micrographs (MRC or TIFF).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    model: Annotated[
        Path | None, typer.Option(help="Model file (default: the model shipped in the package).")
    ] = None,
    binning: Annotated[
        float | None,
        typer.Option("--bin", min=1, help="Fourier-bin by this factor before denoising."),
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option(
            callback=_positive,
            help="Bin to about this pixel size in Å before denoising (default: the model's "
            "training pixel size, 4 Å for the shipped model; never upsamples).",
        ),
    ] = None,
    input_pixel_size: Annotated[
        float | None,
        typer.Option(
            callback=_positive,
            help="Pixel size of the inputs in Å, for TIFFs or MRC headers without one.",
        ),
    ] = None,
    device: DeviceOption = "auto",
    tile: Annotated[
        int, typer.Option(min=16, help="Live mode largest tile side in pixels (binned).")
    ] = DEFAULT_MAX_TILE,
    overlap: Annotated[int, typer.Option(min=0, help="Live mode tile overlap in pixels.")] = 32,
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Tiles per network call (default: 1 on CPU, 8 on GPU)."),
    ] = None,
    suffix: Annotated[str, typer.Option(help="Appended to each output file's stem.")] = "",
    float16: Annotated[bool, typer.Option("--float16", help="Write float16 (mode 12).")] = False,
    guard: GuardOption = None,
    flatten_background: BackgroundOption = None,
) -> None:
    """Denoise micrographs once (no daemon); writes MRCs with the working pixel size."""
    from streamdenoise.model.pipeline import DenoiseSettings
    from streamdenoise.outputs import OutputLayout
    from streamdenoise.processing import OutputOptions, process_micrograph
    from streamdenoise.runtime import load_runtime

    try:
        settings = DenoiseSettings(
            bin_factor=binning,
            target_pixel_size=pixel_size,
            tile=tile,
            overlap=overlap,
            batch_size=batch_size,
            guard=guard is not False,
            background_scale=flatten_background,
        )
        runtime = load_runtime(model, device, compile_model=False)
        layout = OutputLayout(out, out, suffix, folders=False)
        _check_denoise_targets(files, layout)
        _output_directory(out, "--out")
    except (StreamDenoiseError, ValueError) as error:
        raise _fail(error) from None
    options = OutputOptions(
        float16=float16,
        zarr=False,
        thumbnails=False,
        model_label=str(model or "default"),
        diameter_angstrom=None,
        sidecar=False,
    )
    failures = 0
    with _progress() as progress:
        task = progress.add_task("denoising", total=len(files), info="")
        for path in files:
            try:
                results = process_micrograph(
                    path,
                    runtime.network,
                    runtime.loaded.pixel_size,
                    settings,
                    layout,
                    options,
                    input_pixel_size=input_pixel_size,
                    device=runtime.device,
                )
                target = layout.denoised_mrc(path)
                progress.update(task, info=f"{target.name} {results.pixel_size:.2f} Å/px")
                if results.guard is not None and not results.guard.passed:
                    console.print(f"[yellow]{path}:[/] {results.guard.summary()}")
            except (StreamDenoiseError, ValueError, OSError) as error:
                failures += 1
                _say("failed", _about(path, error))
            progress.advance(task)
    console.print(f"Denoised {len(files) - failures} of {len(files)} micrographs into {out}")
    if failures:
        raise typer.Exit(code=1)


def _check_denoise_targets(files: list[Path], layout: OutputLayout) -> None:
    """Raise ValueError, naming the files, before any work when an output
    (OUT/<stem><suffix>.mrc) would overwrite an input or another output of the run."""
    targets = [layout.denoised_mrc(path) for path in files]
    inputs = {os.path.realpath(path): path for path in files}
    claimed: dict[str, Path] = {}
    for path, target in zip(files, targets, strict=True):
        key = os.path.realpath(target)
        if key in inputs:
            raise ValueError(
                f"{target} would overwrite the input {inputs[key]}; choose another --out "
                "or a --suffix"
            )
        if key in claimed:
            raise ValueError(
                f"{claimed[key]} and {path} would both be written to {target}; denoise them "
                "into different --out folders"
            )
        claimed[key] = path


@app.command()
def train(
    micrographs: Annotated[list[Path], typer.Argument(help="Training micrographs (MRC/TIFF).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write.")],
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference map (MRC) or model (PDB/mmCIF): adds target guidance."),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Adapt this model file to the given micrographs (a session's own, noisy "
            "only) instead of training from scratch: fine-tunes a copy with the blind-spot "
            "loss on all but the last quarter, and writes OUT only if a picking criterion on "
            "that quarter (see --particle-diameter) beats both the model and no denoising "
            "(else exits 1). Works at the model's pixel size."
        ),
    ] = None,
    particle_diameter: Annotated[
        float,
        typer.Option(
            min=10.0,
            help="Particle diameter in Å; with --init, the scale of the held-out picking "
            "criterion.",
        ),
    ] = 150.0,
    clean_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory of noise-free images named <stem>_clean.mrc (a simulated "
            "session's ground_truth/): trains on clean targets instead of noisy data alone."
        ),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 2000,
    batch: Annotated[int, typer.Option(min=1, help="Crops per step.")] = 8,
    crop: Annotated[
        int,
        typer.Option(min=8, help="Crop side in pixels (binned); at most the smallest side."),
    ] = 128,
    learning_rate: Annotated[
        float, typer.Option(min=0.0, help="Adam learning rate (cosine decay).")
    ] = 5e-4,
    pixel_size: Annotated[
        float,
        typer.Option(
            callback=_positive, help="Working pixel size in Å: micrographs are binned to it."
        ),
    ] = 4.0,
    input_pixel_size: Annotated[
        float | None,
        typer.Option(
            callback=_positive,
            help="Pixel size of the inputs in Å, for TIFFs or MRC headers without one.",
        ),
    ] = None,
    base_channels: Annotated[int, typer.Option(min=1, help="U-Net width of the first level.")] = 16,
    template_defocus: Annotated[
        float | None,
        typer.Option(help="Apply a CTF at this defocus (µm) to the reference templates."),
    ] = None,
    guidance_away: Annotated[
        bool,
        typer.Option(
            "--guidance-away",
            help="Use the public code's sign of the guidance target (away from the reference) "
            "instead of toward it; for comparison only.",
        ),
    ] = False,
    device: DeviceOption = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from OUT.ckpt after an interruption.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train a score model (plain, or target-guided with --reference), or adapt one to a
    session (--init)."""
    from streamdenoise.engine.device import resolve_device
    from streamdenoise.io import read_micrograph
    from streamdenoise.model.guidance import TemplateSpec, load_templates
    from streamdenoise.model.modelfile import load_model, save_model
    from streamdenoise.model.training import TrainConfig, prepare_image
    from streamdenoise.model.training import train as run_training
    from streamdenoise.model.unet import ScoreUNet, UNetConfig
    from streamdenoise.physics.density import load_reference

    if init is not None and clean_dir is not None:
        raise _fail(ValueError("--init adapts on noisy micrographs alone; drop --clean-dir"))
    try:
        _output_file(out, "--out")
        torch_device = resolve_device(device)
        initial = None
        if init is not None:
            initial = load_model(init, device=torch_device)
            pixel_size = initial.pixel_size
        images = []
        for path in micrographs:
            micrograph = read_micrograph(path, pixel_size=input_pixel_size)
            clean = None
            if clean_dir is not None:
                clean = read_micrograph(clean_dir / f"{path.stem}_clean.mrc").data
            noise_unit = initial is not None and initial.model.noise_unit_input
            images.append(
                prepare_image(
                    micrograph.data, micrograph.pixel_size, pixel_size, clean, noise_unit=noise_unit
                )
            )
        for path, image in zip(micrographs, images, strict=True):
            if min(image.noisy.shape) < crop:
                height, width = image.noisy.shape
                raise ValueError(
                    f"{path}: {width}×{height} px at {pixel_size:g} Å/px is smaller than "
                    f"--crop {crop}"
                )
        templates = None
        if reference is not None:
            defocus = None if template_defocus is None else template_defocus * 1e4
            spec = TemplateSpec(pixel_size=pixel_size, box=crop, defocus=defocus)
            templates = load_templates(load_reference(reference), spec)
        network = ScoreUNet(
            UNetConfig(base_channels=base_channels, channel_multipliers=(1, 2, 4), norm_groups=0)
        )
        config = TrainConfig(
            steps=steps,
            batch=batch,
            crop=crop,
            learning_rate=learning_rate,
            seed=seed,
            guidance_toward=not guidance_away,
        )
    except (StreamDenoiseError, ValueError) as error:
        raise _fail(error) from None
    if initial is not None:
        diameter = particle_diameter / initial.pixel_size
        _adapt_model(initial, images, config, templates, out, torch_device, micrographs, diameter)
        return
    held_out = images[-1:] if len(images) > 1 else images
    training_images = images[:-1] if len(images) > 1 else images
    checkpoint = out.with_name(out.name + ".ckpt")
    with _progress() as progress:
        task = progress.add_task("training", total=steps, info="")

        def report(step: int, loss: float, validation_loss: float | None) -> None:
            info = f"loss {loss:.4f}"
            if validation_loss is not None:
                info += f" · held-out {validation_loss:.4f}"
            progress.update(task, completed=step, info=info)

        state = run_training(
            network,
            training_images,
            config,
            validation=held_out,
            templates=templates,
            checkpoint=checkpoint,
            resume=resume,
            on_step=report,
            device=torch_device,
        )
    save_model(
        out,
        network,
        pixel_size=pixel_size,
        provenance={
            "trained_by": "streamdenoise train",
            "micrographs": [str(p) for p in micrographs],
            "objective": "clean-target DSM" if clean_dir else "AR-DAE DSM (noisy data only)",
            "guidance": reference is not None,
            "guidance_sign": "away" if guidance_away else "toward",
            "template_defocus_um": template_defocus,
            "reference": str(reference) if reference else None,
            "steps": state.step,
            "validation_history": state.history,
        },
    )
    checkpoint.unlink(missing_ok=True)
    console.print(f"Wrote {out} ({state.step} steps)")


def _adapt_model(
    initial, images, config, templates, out: Path, device, sources, diameter: float
) -> None:
    """`train --init`: adapt `initial` (a LoadedModel) to `images`; write OUT if the
    held-out criterion (particles of `diameter` working pixels) improved, else exit 1
    without writing."""
    from streamdenoise.model.modelfile import save_model
    from streamdenoise.model.training import adapt

    with console.status(f"adapting {initial.path.name}: {config.steps} steps"):
        try:
            result = adapt(
                initial.model,
                images,
                diameter=diameter,
                steps=config.steps,
                batch=config.batch,
                crop=config.crop,
                learning_rate=config.learning_rate,
                seed=config.seed,
                templates=templates,
                device=device,
            )
        except ValueError as error:
            raise _fail(error) from None
    criterion = (
        f"held-out picking criterion {result.criterion_after:.4f} (model "
        f"{result.criterion_before:.4f}, no denoising {result.criterion_input:.4f})"
    )
    if not result.improved:
        console.print(f"[yellow]Not written:[/] adaptation did not improve: {criterion}")
        raise typer.Exit(code=1)
    save_model(
        out,
        result.model,
        pixel_size=initial.pixel_size,
        provenance={
            "trained_by": "streamdenoise train --init",
            "initial_model": str(initial.path),
            "initial_provenance": initial.provenance,
            "micrographs": [str(p) for p in sources],
            "objective": "blind-spot adaptation (noisy data only)",
            "guidance": templates is not None,
            "steps": config.steps,
            "particle_diameter_px": diameter,
            "held_out_criterion_input": result.criterion_input,
            "held_out_criterion_before": result.criterion_before,
            "held_out_criterion_after": result.criterion_after,
        },
    )
    console.print(f"Wrote {out}: {criterion}")


def _setup_logging(rich_console: bool) -> None:
    import logging

    if rich_console:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False)
        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler])
    else:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


def _run_daemon(config, on_snapshot=None, on_start=None) -> int:
    """Run the daemon with the rich dashboard on a terminal, or headless.

    on_snapshot(snapshot) sees every published snapshot; on_start(daemon) is called once
    the daemon exists (the demo uses it to stop the daemon when the session is over)."""
    import sys

    from rich.live import Live

    from streamdenoise.daemon import Daemon
    from streamdenoise.dashboard import HeadlessReporter, render

    headless = config.headless if config.headless is not None else not sys.stderr.isatty()
    _setup_logging(rich_console=not headless)
    reporter = HeadlessReporter(config.status_interval) if headless else None

    def publish(snapshot) -> None:
        if reporter is not None:
            reporter(snapshot)
        if on_snapshot is not None:
            on_snapshot(snapshot)

    daemon = Daemon(config, on_snapshot=publish)
    daemon.install_signal_handlers()
    if on_start is not None:
        on_start(daemon)
    if headless:
        return daemon.run()
    with Live(
        get_renderable=lambda: render(daemon.snapshot), console=console, refresh_per_second=2
    ):
        return daemon.run()


@app.command()
def watch(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Directory where micrographs appear (or watch_dir in --config)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: DIR/streamdenoise)."),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Journal, status.json and lock (default: the output directory)."),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file; flags override it.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model file (default: the shipped one).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(help="Glob of files to take (repeatable; default *.mrc, *.tif, *.tiff)."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Glob of files to skip (repeatable).")
    ] = None,
    polling: Annotated[
        bool | None,
        typer.Option(
            "--polling/--no-polling",
            help="Poll instead of inotify (default: poll on network mounts).",
        ),
    ] = None,
    settle: Annotated[
        float | None,
        typer.Option(
            callback=_positive,
            help="Seconds a file's size and mtime must be stable (×3 on network mounts).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            callback=_positive, help="Seconds after which a never-complete file is quarantined."
        ),
    ] = None,
    rescan_interval: Annotated[
        float | None,
        typer.Option(
            callback=_positive, help="Seconds between full rescans (events are only hints)."
        ),
    ] = None,
    binning: Annotated[
        float | None, typer.Option("--bin", min=1, help="Fourier-bin inputs by this factor.")
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option(
            callback=_positive, help="Working pixel size in Å (default: the model's, 4 Å)."
        ),
    ] = None,
    input_pixel_size: Annotated[
        float | None,
        typer.Option(
            callback=_positive, help="Pixel size of the inputs in Å (TIFF, or MRC without one)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Tiles per network call (default: 1 on CPU, 8 on GPU)."),
    ] = None,
    float16: Annotated[
        bool | None, typer.Option("--float16/--float32", help="Output precision.")
    ] = None,
    suffix: Annotated[str | None, typer.Option(help="Appended to output file stems.")] = None,
    order: Annotated[str | None, typer.Option(help="oldest, newest or alternate first.")] = None,
    headless: Annotated[
        bool | None,
        typer.Option(
            "--headless/--dashboard",
            help="Log lines instead of the live dashboard (default: headless without a terminal).",
        ),
    ] = None,
    status_interval: Annotated[
        float | None,
        typer.Option(callback=_positive, help="Seconds between headless summary lines."),
    ] = None,
    compile_model: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the model: slower start, faster per micrograph (default: "
            "compile when this machine can, i.e. Triton on a GPU or a C++ compiler on a CPU; "
            "if that fails, run eagerly).",
        ),
    ] = None,
    particle_diameter: Annotated[
        float | None,
        typer.Option(
            callback=_positive,
            help="Expected particle diameter in Å, for picking statistics (default: from "
            "--reference, else estimated from the first 5 micrographs, 150 until then).",
        ),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Density map (.mrc/.map) or atomic model (.pdb/.cif) of the particle: the "
            "picking statistics use its diameter (unless --particle-diameter is given)."
        ),
    ] = None,
    statistics: Annotated[
        bool | None,
        typer.Option(
            "--statistics/--no-statistics",
            help="Compute picking-readiness statistics and write candidate coordinates.",
        ),
    ] = None,
    guard: GuardOption = None,
    flatten_background: BackgroundOption = None,
    adapt_after: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Adapt the model to this session after its first N micrographs (0: off, "
            "the default; N ≥ 2): a background thread fine-tunes a copy with the blind-spot "
            "loss and swaps it in only if a picking criterion on the last quarter, held "
            "out, beats the model and no denoising. The adapted weights go to "
            "STATE/adapted_model.pt. Measured results: docs/model.md.",
        ),
    ] = None,
    adapt_steps: Annotated[
        int | None, typer.Option(min=1, help="Optimiser steps of --adapt-after (default 300).")
    ] = None,
    voltage: VoltageOption = None,
    cs: CsOption = None,
    amplitude_contrast: AmplitudeContrastOption = None,
    optics_from: OpticsFromOption = None,
    relion_project: RelionProjectOption = None,
    picks_frame: PicksFrameOption = None,
) -> None:
    """Denoise every micrograph that appears in DIR, live, until stopped (SIGTERM drains)."""
    from streamdenoise.config import load_config

    overrides = {
        "watch_dir": directory,
        "out_dir": out,
        "state_dir": state_dir,
        "model": model,
        "device": device,
        "include": include,
        "exclude": exclude,
        "polling": polling,
        "settle_seconds": settle,
        "timeout_seconds": timeout,
        "rescan_interval": rescan_interval,
        "bin": binning,
        "pixel_size": pixel_size,
        "input_pixel_size": input_pixel_size,
        "batch_size": batch_size,
        "float16": float16,
        "suffix": suffix,
        "order": order,
        "headless": headless,
        "status_interval": status_interval,
        "compile": compile_model,
        "particle_diameter": particle_diameter,
        "reference": reference,
        "statistics": statistics,
        "guard": guard,
        "background_scale": flatten_background,
        "adapt_after": adapt_after,
        "adapt_steps": adapt_steps,
        "voltage_kv": voltage,
        "spherical_aberration_mm": cs,
        "amplitude_contrast": amplitude_contrast,
        "optics_from": optics_from,
        "relion_project": relion_project,
        "picks_frame": picks_frame,
    }
    try:
        config = load_config(config_file, overrides)
        if not config.watch_dir.is_dir():
            raise ValueError(f"{config.watch_dir}: not a folder; give the folder to watch")
        _check_optics_from(config.optics_from)
        _output_directory(config.output_dir, "--out")
        if config.state_dir is not None:
            _output_directory(config.state_dir, "--state-dir")
        code = _run_daemon(config)
    except (StreamDenoiseError, ValueError, OSError) as error:
        raise _fail(error) from None
    raise typer.Exit(code=code)


@app.command()
def status(
    out_dir: Annotated[Path, typer.Argument(help="The daemon's output directory.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep showing updates.")] = False,
    state_dir: StateDirOption = None,
) -> None:
    """Show the state of a running (or finished) daemon from OUT/status.json."""
    from rich.live import Live

    from streamdenoise.dashboard import follow_status, read_status, render

    try:
        state = state_dir or out_dir
        snapshot = read_status(state)
    except (OSError, ValueError) as error:
        raise _fail(ValueError(f"{state / 'status.json'}: no daemon status ({error})")) from None
    if not follow:
        Console().print(render(snapshot))
        return
    with Live(render(snapshot), console=Console(), refresh_per_second=2) as live:
        for update in follow_status(state):
            live.update(render(update))


@app.command()
def quarantine(
    out_dir: Annotated[Path, typer.Argument(help="The daemon's output directory.")],
    retry: Annotated[
        bool, typer.Option("--retry", help="Put every quarantined file back in the queue.")
    ] = False,
    state_dir: StateDirOption = None,
) -> None:
    """List the files the daemon gave up on, with their reasons (or retry them)."""
    from rich.table import Table

    from streamdenoise.watch import Journal

    try:
        journal = Journal(_journal_path(state_dir or out_dir))
    except (StreamDenoiseError, ValueError) as error:
        raise _fail(error) from None
    with journal:
        entries = journal.quarantined()
        if retry:
            count = journal.retry()
            from streamdenoise.dashboard import daemon_alive

            who = (
                "by the running daemon"
                if daemon_alive(journal.path.parent)
                else "when a daemon next runs on this folder"
            )
            console.print(f"{count} file(s) will be processed again {who}")
            return
    table = Table("file", "attempts", "reason")
    for entry in entries:
        table.add_row(str(entry.path), str(entry.attempts), entry.error or "")
    Console().print(table if entries else "nothing is quarantined")


@app.command()
def demo(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to keep the demo session (default: a temporary folder, removed at "
            "the end).",
        ),
    ] = None,
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="Micrographs to acquire.")] = 8,
    rate: Annotated[float, typer.Option(min=0.1, help="Seconds between micrographs.")] = 4.0,
    device: DeviceOption = "auto",
    headless: Annotated[
        bool | None,
        typer.Option("--headless/--dashboard", help="Log lines instead of the dashboard."),
    ] = None,
) -> None:
    """Acquire a simulated session (2048² at 2 Å/px, one micrograph every RATE s) and
    denoise it live with `watch`; prints where the outputs are (with --out)."""
    import shutil
    import tempfile

    try:
        root = (
            _output_directory(out, "--out")
            if out is not None
            else Path(tempfile.mkdtemp(prefix="streamdenoise-demo-"))
        )
    except ValueError as error:
        raise _fail(error) from None
    try:
        code = _demo_session(root, count, rate, device, headless, keep=out is not None)
    finally:
        if out is None:
            shutil.rmtree(root, ignore_errors=True)
    raise typer.Exit(code=code)


def _demo_session(
    root: Path, count: int, rate: float, device: str, headless: bool | None, keep: bool
) -> int:
    """Run `demo` in `root`: the acquisition in a thread (stopped with the daemon), the
    daemon in this one; returns the daemon's exit code. `keep`: print where the files are."""
    import threading

    from streamdenoise.acquisition import write_session
    from streamdenoise.config import load_config
    from streamdenoise.dashboard import read_status
    from streamdenoise.physics.density import builtin_reference_path, load_reference
    from streamdenoise.physics.session import SessionSpec

    session, outputs = root / "session", root / "denoised"
    (session / "micrographs").mkdir(parents=True, exist_ok=True)
    spec = SessionSpec(count=count, seed=1, detector="falcon4i", pixel_size=1.0, binning=2)
    console.print(
        f"Demo: acquiring {count} micrographs into {session / 'micrographs'}, one every {rate:g} s"
    )
    acquisition_error: list[BaseException] = []
    stopping = threading.Event()

    class Stopped(Exception):
        """The daemon stopped before the acquisition ended (e.g. Ctrl-C)."""

    def wait(seconds: float) -> None:
        """The acquisition's pause between micrographs; ends it once the daemon stops."""
        if stopping.wait(seconds):
            raise Stopped

    def acquire() -> None:
        try:
            write_session(
                session,
                spec,
                load_reference(),
                rate=rate,
                write_mode="mixed",
                sleep=wait,
            )
        except Stopped:
            pass
        except BaseException as error:  # reported after the daemon stops
            acquisition_error.append(error)

    writer = threading.Thread(target=acquire, name="acquisition", daemon=True)
    config = load_config(
        None,
        {
            "watch_dir": session / "micrographs",
            "out_dir": outputs,
            "device": device,
            "headless": headless,
            "settle_seconds": 1.0,
            "status_interval": 5.0,
            "reference": builtin_reference_path(),  # the statistics' diameter, as simulated
        },
    )
    finished = threading.Event()

    def on_snapshot(snapshot) -> None:
        if (
            not writer.is_alive()
            and snapshot.done + snapshot.quarantined + snapshot.failed >= count
        ):
            finished.set()

    def stop_when_finished(daemon) -> None:
        finished.wait()
        daemon.request_stop()

    writer.start()
    try:
        code = _run_daemon(
            config,
            on_snapshot=on_snapshot,
            on_start=lambda daemon: threading.Thread(
                target=stop_when_finished, args=(daemon,), daemon=True
            ).start(),
        )
    except (StreamDenoiseError, ValueError, OSError) as error:
        raise _fail(error) from None
    finally:
        stopping.set()
        writer.join()
    if acquisition_error:
        raise _fail(ValueError(f"the simulated acquisition failed: {acquisition_error[0]}"))
    final = read_status(outputs)
    console.print(
        f"\nDone: {final.done} of {count} micrographs denoised, median latency "
        f"{final.latency_median or 0:.1f} s."
    )
    if not keep:
        console.print("The demo ran in a temporary folder, now removed (--out DIR keeps it).")
        return code
    console.print(
        f"  raw micrographs:    {session / 'micrographs'}\n"
        f"  ground truth:       {session / 'ground_truth'}\n"
        f"  denoised MRC:       {outputs / 'denoised'}\n"
        f"  OME-Zarr:           {outputs / 'denoised.zarr'}\n"
        f"  RELION STAR:        {outputs / 'micrographs_denoised.star'}\n"
        f"  thumbnails:         {outputs / 'thumbnails'}\n"
        f"  status:             streamdenoise status {outputs}"
    )
    return code


@app.command()
def batch(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Micrographs, or directories searched for *.mrc, *.tif, *.tiff."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    scheduler: Annotated[
        str | None,
        typer.Option(help="Address of a running Dask scheduler, e.g. tcp://host:8786."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Start this many local worker processes (default: one per CPU core, or one "
            "with --device cuda)."
        ),
    ] = None,
    threads_per_worker: Annotated[
        int, typer.Option(help="Micrographs each local worker processes at once.")
    ] = 1,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Journal and lock, on a local disk (default: the output directory)."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="Model file, at the same path on every worker (default: the shipped)."),
    ] = None,
    device: Annotated[
        str,
        typer.Option(help="Device on the workers: auto, cpu or cuda (one task per GPU at a time)."),
    ] = "auto",
    binning: Annotated[
        float | None, typer.Option("--bin", min=1, help="Fourier-bin inputs by this factor.")
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option(
            callback=_positive, help="Working pixel size in Å (default: the model's, 4 Å)."
        ),
    ] = None,
    input_pixel_size: Annotated[
        float | None,
        typer.Option(
            callback=_positive, help="Pixel size of the inputs in Å (TIFF, or MRC without one)."
        ),
    ] = None,
    float16: Annotated[bool, typer.Option("--float16", help="Write float16 (mode 12).")] = False,
    zarr: Annotated[bool, typer.Option("--zarr/--no-zarr", help="Write OME-Zarr groups.")] = True,
    guard: GuardOption = None,
    flatten_background: BackgroundOption = None,
    voltage: VoltageOption = None,
    cs: CsOption = None,
    amplitude_contrast: AmplitudeContrastOption = None,
    optics_from: OpticsFromOption = None,
    relion_project: RelionProjectOption = None,
    picks_frame: PicksFrameOption = None,
) -> None:
    """Reprocess a whole dataset on a Dask cluster, with the daemon's outputs and journal
    (micrographs already done, by the daemon or an earlier batch, are skipped)."""
    import os

    if scheduler is not None and workers is not None:
        raise _fail(ValueError("give --scheduler or --workers, not both"))
    if threads_per_worker < 1 or (workers is not None and workers < 1):
        raise _fail(ValueError("--workers and --threads-per-worker must be at least 1"))
    try:
        from distributed import Client

        from streamdenoise.distributed import (
            BatchConfig,
            find_inputs,
            local_cluster,
            local_workers,
            run_batch,
        )
    except ImportError:
        raise _fail(ValueError('batch needs Dask: pip install "streamdenoise[cluster]"')) from None
    import torch

    from streamdenoise.io.relion import OpticsSettings
    from streamdenoise.model.pipeline import DenoiseSettings
    from streamdenoise.outputs import pick_frames

    count, gpu = local_workers(
        device,
        workers,
        threads_per_worker,
        cpus=os.cpu_count() or 1,
        gpus=torch.cuda.device_count() if scheduler is None else 0,
    )
    if gpu and device.strip().lower() == "auto":
        device = "cuda"  # this host's GPUs: one task per GPU at a time
    given = {
        "voltage_kv": voltage,
        "spherical_aberration_mm": cs,
        "amplitude_contrast": amplitude_contrast,
        "optics_from": optics_from,
        "project": relion_project,
    }
    try:
        optics = OpticsSettings(**{k: v for k, v in given.items() if v is not None})
        pick_frames(picks_frame or "input")
        _check_optics_from(optics_from)
        files, root = find_inputs(inputs, exclude=(out, state_dir or out))
        _output_directory(out, "--out")
        if state_dir is not None:
            _output_directory(state_dir, "--state-dir")
        config = BatchConfig(
            out_dir=out,
            root=root,
            model=model,
            device=device,
            settings=DenoiseSettings(
                bin_factor=binning,
                target_pixel_size=pixel_size,
                guard=guard is not False,
                background_scale=flatten_background,
            ),
            input_pixel_size=input_pixel_size,
            float16=float16,
            zarr=zarr,
            state_dir=state_dir,
            optics=optics,
            picks_frame=picks_frame or "input",
        )
        console.print(f"{len(files)} micrograph(s) below {root}")
        cluster = None if scheduler else local_cluster(count, threads_per_worker, gpu)
        try:
            with Client(scheduler or cluster) as client:
                result = run_batch(files, config, client, console=console)
        finally:
            if cluster is not None:
                cluster.close()
    except (StreamDenoiseError, ValueError, OSError) as error:
        raise _fail(error) from None
    for path, reason in result.quarantined.items():
        _say("quarantined", _about(path, reason))
    zarr_line = f"  OME-Zarr:      {out / 'denoised.zarr'}\n" if zarr else ""
    console.print(
        f"Done: {result.done} denoised ({result.per_hour:.0f}/h), {result.skipped} already "
        f"done or quarantined, {len(result.quarantined)} quarantined, of {result.inputs}.\n"
        f"  denoised MRC:  {out / 'denoised'}\n{zarr_line}"
        f"  RELION STAR:   {result.star or 'none (nothing done)'}\n"
        f"  journal:       {config.layout.journal}"
    )
    if result.quarantined:  # some inputs failed: exit 1, as `denoise` does
        raise typer.Exit(code=1)


@app.command()
def report(
    out_dir: Annotated[Path, typer.Argument(help="The daemon's output (state) directory.")],
    output: Annotated[
        Path | None, typer.Option("--output", help="HTML file to write (default OUT/report.html).")
    ] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Write an HTML session report (statistics over time, verdicts, example thumbnails)."""
    from streamdenoise.report import write_report

    state = state_dir or out_dir
    try:
        _journal_path(state)
        written = write_report(
            out_dir, state, _output_file(output or out_dir / "report.html", "--output")
        )
    except (StreamDenoiseError, ValueError, OSError) as error:
        raise _fail(error) from None
    console.print(f"Wrote {written}")


def _journal_path(state: Path) -> Path:
    """The journal of the state folder `state`; ValueError if there is none."""
    path = state / "journal.sqlite"
    if not path.is_file():
        raise ValueError(f"{path}: no journal here (give the daemon's OUT or --state-dir)")
    return path
