"""Command-line interface: parse, call, print. No science lives here; the options are
declared once in `streamdenoise.options`, the settings they feed in `streamdenoise.config`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from streamdenoise import __version__
from streamdenoise import options as opt
from streamdenoise.config import load_settings
from streamdenoise.errors import StreamDenoiseError, one_line
from streamdenoise.io.writable import writable_file, writable_folder
from streamdenoise.outputs import journal_in

app = typer.Typer(
    help="Live score-based denoising of cryo-EM micrographs.\n\n"
    "Exit codes: 0 done; 1 some inputs failed (each named on stderr; denoise, batch); "
    "2 a usage or environment error (one line naming the option or file).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
EXPECTED = (StreamDenoiseError, ValueError, OSError)
"""The errors a command reports as one line (exit code 2), never as a traceback."""


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


def _say(kind: str, message: object) -> None:
    """Print "KIND: message" as one line on stderr (never wrapped, no markup from it)."""
    console.print(f"[bold red]{kind}:[/] {escape(one_line(message))}", soft_wrap=True)


@contextmanager
def _reported() -> Iterator[None]:
    """Report an expected error as one line on stderr and exit with code 2."""
    try:
        yield
    except EXPECTED as error:
        _say("error", error)
        raise typer.Exit(code=2) from None


def _about(path: Path, error: object) -> str:
    """`error` as a message naming `path` (prefixed unless it already names it)."""
    text = str(error)
    return text if str(path) in text else f"{path}: {text}"


def _progress(*columns: Any) -> Progress:
    """A progress bar on stderr: description, bar, count, `columns`, time left."""
    description = TextColumn("[progress.description]{task.description}")
    return Progress(
        description, BarColumn(), MofNCompleteColumn(), *columns, TimeRemainingColumn(),
        console=console,
    )  # fmt: skip


@app.command()
def simulate(
    out: opt.SimulateOut,
    count: opt.Count = 10,
    detector: opt.SimulateDetector = "falcon4i",
    detector_pixel_size: opt.SimulateDetectorPixelSize = None,
    binning: opt.SimulateBinning = 1,
    dose: opt.SimulateDose = 40.0,
    defocus: opt.SimulateDefocus = "0.8:2.5",
    ice_thickness: opt.SimulateIceThickness = "250:500",
    particle_density: opt.SimulateParticleDensity = 1800.0,
    carbon_edge_fraction: opt.SimulateCarbonEdgeFraction = 0.2,
    aggregate_fraction: opt.SimulateAggregateFraction = 0.05,
    empty_fraction: opt.SimulateEmptyFraction = 0.0,
    reference: opt.SimulateReference = None,
    seed: opt.SimulateSeed = 0,
    rate: opt.SimulateRate = None,
    write_mode: opt.SimulateWriteMode = "mixed",
    float16: opt.SimulateFloat16 = False,
) -> None:
    """Simulate a cryo-EM session: noisy micrographs plus ground truth beside them."""
    from streamdenoise.acquisition import check_new_session, write_session
    from streamdenoise.physics.density import load_reference
    from streamdenoise.physics.session import SessionSpec, parse_range

    with _reported():
        spec = SessionSpec(
            count=count, seed=seed, detector=detector, pixel_size=detector_pixel_size,
            binning=binning, dose=dose, defocus_range=parse_range(defocus, "--defocus"),
            particle_density=particle_density, carbon_edge_fraction=carbon_edge_fraction,
            aggregate_fraction=aggregate_fraction, empty_fraction=empty_fraction,
            ice_thickness_range=parse_range(ice_thickness, "--ice-thickness"),
        )  # fmt: skip
        scatterers = load_reference(reference)
        check_new_session(out)
        writable_folder(out, "OUT")
        ny, nx = spec.output_shape
        console.print(
            f"Simulating {count} micrographs of {nx}×{ny} px at "
            f"{spec.detector_pixel_size * binning:.3g} Å/px, {dose:g} e⁻/Å², "
            f"reference {Path(scatterers.source).name} (diameter {scatterers.diameter:.0f} Å)"
        )
        with _progress() as progress:
            task = progress.add_task("simulating", total=count)
            write_session(
                out, spec, scatterers, rate=rate, write_mode=write_mode, float16=float16,
                on_written=lambda index, path: progress.advance(task),
            )  # fmt: skip
    console.print(f"Wrote {count} micrographs to {out / 'micrographs'} (truth in ground_truth/)")


@app.command()
@opt.with_settings(*opt.DENOISE, "mirror", *opt.OUTPUT_KEYS)
def denoise(
    files: opt.DenoiseFiles,
    config: opt.Config = None,
    **given: Any,
) -> None:
    """Denoise micrographs once (no daemon) at the working pixel size: OUT/<stem><suffix>.mrc,
    or with --mirror what watch and batch write, in their layout. Reads the denoise,
    outputs and readiness tables of --config; never overwrites an input."""
    from streamdenoise.oneshot import plan_denoise
    from streamdenoise.processing import process_micrograph
    from streamdenoise.runtime import load_runtime

    with _reported():
        settings = load_settings(config, given)
        out, label = settings.output_dir, str(settings.denoise.model or "default")
        plan = plan_denoise(settings, files, given, label)
        runtime = load_runtime(settings.denoise.model, settings.denoise.device, compile_model=False)
        plan.make_places(settings)
    failures = 0
    with _progress(TextColumn("{task.fields[info]}")) as progress:
        task = progress.add_task("denoising", total=len(files), info="")
        for path in files:
            try:
                results = process_micrograph(
                    path, runtime.network, runtime.loaded.pixel_size, settings.denoise.settings(),
                    plan.layout, plan.options, input_pixel_size=settings.denoise.input_pixel_size,
                    device=runtime.device,
                )  # fmt: skip
                plan.done(path, results.outputs)
                target = plan.layout.denoised_mrc(path)
                progress.update(task, info=f"{target.name} {results.pixel_size:.2f} Å/px")
                if results.guard is not None and not results.guard.passed:
                    console.print(f"[yellow]{path}:[/] {results.guard.summary()}")
            except EXPECTED as error:
                failures += 1
                _say("failed", _about(path, error))
            except Exception as error:  # a bug: said with its traceback; the rest still run
                failures += 1
                console.print_exception()
                _say("failed", f"{path}: internal error ({error!r}), please report it")
            progress.advance(task)
    with _reported():
        plan.finish()
    console.print(f"Denoised {len(files) - failures} of {len(files)} micrographs into {out}")
    if failures:
        raise typer.Exit(code=1)


@app.command()
@opt.with_settings("device", "input_pixel_size")
def train(
    micrographs: opt.TrainMicrographs,
    model_out: opt.TrainModelOut,
    reference: opt.TrainReference = None,
    init: opt.TrainInit = None,
    particle_diameter: opt.TrainParticleDiameter = 150.0,
    clean_dir: opt.TrainCleanDir = None,
    steps: opt.TrainSteps = 2000,
    batch: opt.TrainBatch = 8,
    crop: opt.TrainCrop = 128,
    learning_rate: opt.TrainLearningRate = 5e-4,
    pixel_size: opt.TrainPixelSize = 4.0,
    base_channels: opt.TrainBaseChannels = 16,
    template_defocus: opt.TrainTemplateDefocus = None,
    guidance_away: opt.TrainGuidanceAway = False,
    resume: opt.TrainResume = False,
    seed: opt.TrainSeed = 0,
    **given: Any,
) -> None:
    """Train a score model (plain, or target-guided with --reference), or adapt one to a
    session (--init)."""
    from streamdenoise.model.jobs import TrainJob, adapt_model, describe, prepare, train_model
    from streamdenoise.model.training import TrainConfig

    with _reported():
        settings = load_settings(None, given)
        job = TrainJob(
            micrographs, model_out, TrainConfig(steps=steps, batch=batch, crop=crop,
            learning_rate=learning_rate, seed=seed, guidance_toward=not guidance_away),
            reference=reference, init=init, particle_diameter=particle_diameter,
            clean_dir=clean_dir, pixel_size=pixel_size,
            input_pixel_size=settings.denoise.input_pixel_size, base_channels=base_channels,
            template_defocus=template_defocus, guidance_away=guidance_away,
            device=settings.denoise.device, resume=resume,
        )  # fmt: skip
        prepared = prepare(job)
        if init is not None:
            with console.status(f"adapting {init.name}: {steps} steps"):
                result = adapt_model(job, prepared)
            criterion = describe(result)
            if not result.improved:
                console.print(f"[yellow]Not written:[/] adaptation did not improve: {criterion}")
                raise typer.Exit(code=1)
            console.print(f"Wrote {model_out}: {criterion}")
            return
    with _progress(TextColumn("{task.fields[info]}")) as progress:
        task = progress.add_task("training", total=steps, info="")

        def report(step: int, loss: float, validation_loss: float | None) -> None:
            held = "" if validation_loss is None else f" · held-out {validation_loss:.4f}"
            progress.update(task, completed=step, info=f"loss {loss:.4f}{held}")

        done = train_model(job, prepared, on_step=report)
    console.print(f"Wrote {model_out} ({done} steps)")


@app.command()
@opt.with_settings(*opt.DENOISE, *opt.SESSION, *opt.WATCH)
def watch(
    watch_dir: opt.WatchWatchDir = None,
    config: opt.Config = None,
    **given: Any,
) -> None:
    """Denoise every micrograph that appears in DIR, live, until stopped (SIGTERM drains)."""
    from streamdenoise.daemon import run_daemon

    with _reported():
        settings = load_settings(config, {"watch_dir": watch_dir, **given})
        if not settings.watch_dir.is_dir():
            raise ValueError(f"{settings.watch_dir}: not a folder; give the folder to watch")
        settings.check_places()
        code = run_daemon(settings, console)
    raise typer.Exit(code=code)


@app.command()
@opt.with_settings("state_dir")
def status(out_dir: opt.DaemonOut, follow: opt.StatusFollow = False, **given: Any) -> None:
    """Show the state of a running (or finished) daemon from OUT/status.json."""
    from rich.live import Live

    from streamdenoise.dashboard import follow_status, read_status, render

    state = given["state_dir"] or out_dir
    try:
        snapshot = read_status(state)
    except (OSError, ValueError) as error:
        _say("error", f"{state / 'status.json'}: no daemon status ({error})")
        raise typer.Exit(code=2) from None
    if not follow:
        Console().print(render(snapshot))
        return
    with Live(render(snapshot), console=Console(), refresh_per_second=2) as live:
        for update in follow_status(state):
            live.update(render(update))


@app.command()
@opt.with_settings("state_dir")
def quarantine(out_dir: opt.DaemonOut, retry: opt.QuarantineRetry = False, **given: Any) -> None:
    """List the files the daemon gave up on, with their reasons (or retry them)."""
    from rich.table import Table

    from streamdenoise.dashboard import daemon_alive
    from streamdenoise.watch import Journal

    with _reported():
        journal = Journal(journal_in(given["state_dir"] or out_dir))
    with journal:
        entries = journal.quarantined()
        if retry:
            count = journal.retry()
            alive = daemon_alive(journal.path.parent)
            who = "by the running daemon" if alive else "when a daemon next runs on this folder"
            console.print(f"{count} file(s) will be processed again {who}")
            return
    table = Table("file", "attempts", "reason")
    for entry in entries:
        table.add_row(str(entry.path), str(entry.attempts), entry.error or "")
    Console().print(table if entries else "nothing is quarantined")


@app.command()
@opt.with_settings("device", "headless")
def demo(
    out: opt.DemoOut = None,
    count: opt.Count = 8,
    rate: opt.DemoRate = 4.0,
    **given: Any,
) -> None:
    """Acquire a simulated session (2048² at 2 Å/px, one micrograph every RATE s) and
    denoise it live with `watch`; prints where the outputs are (with --out)."""
    import shutil
    import tempfile

    from streamdenoise.demo import demo_session

    with _reported():
        root = (
            writable_folder(out, "--out")
            if out is not None
            else Path(tempfile.mkdtemp(prefix="streamdenoise-demo-"))
        )
    try:
        with _reported():
            code = demo_session(
                root, count, rate, given["device"], given["headless"], console, out is not None
            )
    finally:
        if out is None:
            shutil.rmtree(root, ignore_errors=True)
    if out is None:
        console.print("The demo ran in a temporary folder, now removed (--out DIR keeps it).")
    raise typer.Exit(code=code)


@app.command()
@opt.with_settings(*opt.DENOISE, *opt.SESSION)
def batch(
    inputs: opt.BatchInputs,
    config: opt.Config = None,
    scheduler: opt.BatchScheduler = None,
    workers: opt.BatchWorkers = None,
    threads_per_worker: opt.BatchThreadsPerWorker = 1,
    **given: Any,
) -> None:
    """Reprocess a whole dataset on a Dask cluster, with the daemon's outputs and journal
    (micrographs already done are skipped). Reads the denoise, outputs and readiness
    tables of --config, the daemon's settings file."""
    with _reported():
        try:
            from streamdenoise import distributed
        except ImportError:
            raise ValueError('batch needs Dask: pip install "streamdenoise[cluster]"') from None
        distributed.check_cluster(scheduler, workers, threads_per_worker)
        settings = load_settings(config, given)
        out = settings.output_dir
        files, root = distributed.find_inputs(
            inputs, exclude=(out, settings.outputs.state_dir or out)
        )
        settings.check_places()
        batch = distributed.BatchConfig.from_settings(settings, root)
        console.print(f"{len(files)} micrograph(s) below {root}")
        result = distributed.run_on_cluster(
            files, batch, scheduler=scheduler, workers=workers,
            threads_per_worker=threads_per_worker, console=console,
        )  # fmt: skip
    for path, reason in result.quarantined.items():
        _say("quarantined", _about(path, reason))
    console.print(result.summary(batch))
    if result.quarantined:  # some inputs failed: exit 1, as `denoise` does
        raise typer.Exit(code=1)


@app.command()
@opt.with_settings("state_dir")
def report(out_dir: opt.DaemonOut, html: opt.ReportHtml = None, **given: Any) -> None:
    """Write an HTML session report (statistics over time, verdicts, example thumbnails)."""
    from streamdenoise.report import write_report

    state = given["state_dir"] or out_dir
    with _reported():
        journal_in(state)
        target = writable_file(html or out_dir / "report.html", "--html")
        console.print(f"Wrote {write_report(out_dir, state, target)}")
