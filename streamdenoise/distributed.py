"""Reprocess whole datasets on a Dask cluster, with the daemon's model, tiling, outputs and
journal (`streamdenoise batch`; needs the `cluster` extra: dask[distributed]).

Each worker loads the model once (`ModelPlugin`); one task per micrograph reads, denoises and
writes it (outputs are atomic, so a task that runs twice rewrites the same files). The client
is the only journal writer: it skips what the journal says is done (by the daemon or an
earlier batch), marks the rest `processing`, records each result as it arrives, and writes
the RELION STAR file at the end. A worker that dies mid-task has its task rerun elsewhere by
the scheduler (up to `distributed.scheduler.allowed-failures` times); a bad file is
quarantined with its reason and the batch goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from streamdenoise.config import Settings
from streamdenoise.errors import StreamDenoiseError
from streamdenoise.io.relion import OpticsSettings
from streamdenoise.lock import exclusive_lock
from streamdenoise.model.modelfile import model_digest
from streamdenoise.model.pipeline import DenoiseSettings
from streamdenoise.outputs import OutputLayout, SessionLists, common_folder
from streamdenoise.processing import (
    DEFAULT_DIAMETER,
    OutputOptions,
    process_micrograph,
    processing_params_hash,
)
from streamdenoise.stats.readiness import ReadinessThresholds
from streamdenoise.watch import Discovery, Journal

PLUGIN_NAME = "streamdenoise-model"
GPU = {"GPU": 1}
"""Dask resources of one task on a GPU worker (`dask worker --resources GPU=1`)."""


class ModelPlugin(WorkerPlugin):
    """Loads the model once per worker; tasks find it in `get_worker().plugins`.

    The model file must be readable at the same path on every worker; its digest is checked
    so that every worker denoises with the model the journal's parameter hash names.
    """

    name = PLUGIN_NAME

    def __init__(self, model_path: Path, device: str, digest: str) -> None:
        self.model_path = Path(model_path)
        self.device_request = device
        self.digest = digest

    def setup(self, worker: object) -> None:
        import torch

        from streamdenoise.runtime import load_runtime

        device = worker_device(
            self.device_request, getattr(worker, "name", None), torch.cuda.device_count()
        )
        self.runtime = load_runtime(
            self.model_path, device, compile_model=False, expected_digest=self.digest
        )


def worker_device(request: str, worker_name: object, gpus: int) -> str:
    """The device of one worker: "auto" or "cuda" on local worker number i (LocalCluster
    names them 0, 1, …) of a host with `gpus` > 1 GPUs is GPU i mod `gpus`, so each GPU
    has its own worker; anything else is as asked."""
    if gpus > 1 and request.strip().lower() in ("auto", "cuda") and isinstance(worker_name, int):
        return f"cuda:{worker_name % gpus}"
    return request


def local_workers(
    device: str, workers: int | None, threads_per_worker: int, *, cpus: int, gpus: int
) -> tuple[int, bool]:
    """How many local worker processes to start for `device`, and whether they are GPU
    workers (one GPU resource each): `workers` if given; else one per GPU for "cuda" or
    for "auto" on a host with GPUs (one for "cuda:N"), else one per `threads_per_worker`
    of the `cpus` cores."""
    request = device.strip().lower()
    gpu = request.startswith("cuda") or (request == "auto" and gpus > 0)
    if workers is not None:
        return workers, gpu
    if gpu:
        return (max(1, gpus) if request in ("auto", "cuda") else 1), True
    return max(1, cpus // threads_per_worker), False


@dataclass(frozen=True)
class TaskResult:
    """What a task sends back: outputs {kind: path}, or the reason the file is unusable."""

    path: Path
    outputs: dict[str, str] | None
    error: str | None
    seconds: float
    worker: str


def denoise_task(
    path: Path,
    layout: OutputLayout,
    settings: DenoiseSettings,
    options: OutputOptions,
    input_pixel_size: float | None,
) -> TaskResult:
    """One micrograph on a worker; a bad file is returned as an error, never raised."""
    worker = get_worker()
    plugin = worker.plugins[PLUGIN_NAME]
    start = time.perf_counter()
    try:
        runtime = plugin.runtime
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
    except (StreamDenoiseError, ValueError, OSError, RuntimeError) as error:
        return TaskResult(path, None, str(error), time.perf_counter() - start, worker.address)
    seconds = time.perf_counter() - start
    return TaskResult(path, results.outputs, None, seconds, worker.address)


@dataclass(frozen=True)
class BatchConfig:
    """What to run: model file (None: the shipped one), device on the workers ("cuda…"
    asks for one GPU resource per task), denoising settings and outputs (as `watch`:
    `optics` for the micrographs STAR, `picks_frame` for the candidate coordinates, the
    statistics' diameter and its source, and `reference`, a map or model that picks the
    candidates, on a path every worker can read)."""

    out_dir: Path
    root: Path
    model: Path | None = None
    device: str = "auto"
    settings: DenoiseSettings = field(default_factory=DenoiseSettings)
    input_pixel_size: float | None = None
    float16: bool = False
    zarr: bool = True
    thumbnails: bool = True
    suffix: str = ""
    state_dir: Path | None = None
    retries: int = 2
    optics: OpticsSettings = field(default_factory=OpticsSettings)
    picks_frame: str = "input"
    diameter_angstrom: float | None = DEFAULT_DIAMETER
    thresholds: ReadinessThresholds = field(default_factory=ReadinessThresholds)
    diameter_source: str = "default"
    reference: Path | None = None

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.root, self.out_dir, self.suffix, self.state_dir)

    @classmethod
    def from_settings(cls, settings: Settings, root: Path) -> BatchConfig:
        """The batch of the `[denoise]`, `[outputs]` and `[readiness]` tables that `watch`
        reads too, for the micrographs below `root`."""
        options = settings.output_options("")
        return cls(
            out_dir=settings.output_dir,
            root=root,
            model=settings.denoise.model,
            device=settings.denoise.device,
            settings=settings.denoise.settings(),
            input_pixel_size=settings.denoise.input_pixel_size,
            float16=options.float16,
            zarr=options.zarr,
            thumbnails=options.thumbnails,
            suffix=settings.outputs.suffix,
            state_dir=settings.outputs.state_dir,
            optics=settings.outputs.optics(),
            picks_frame=options.picks_frame,
            diameter_angstrom=options.diameter_angstrom,
            thresholds=options.thresholds,
            diameter_source=options.diameter_source,
            reference=options.reference,
        )


@dataclass
class BatchResult:
    """Counts of one batch (done and quarantined in this run), reasons and wall time."""

    inputs: int
    skipped: int = 0
    done: int = 0
    quarantined: dict[Path, str] = field(default_factory=dict)
    seconds: float = 0.0
    star: Path | None = None

    @property
    def per_hour(self) -> float:
        """Micrographs processed per hour of wall time."""
        return self.done * 3600.0 / self.seconds if self.seconds > 0 else 0.0

    def summary(self, config: BatchConfig) -> str:
        """What was done and where the outputs of `config` are, a few lines."""
        out = config.out_dir
        zarr_line = f"  OME-Zarr:      {out / 'denoised.zarr'}\n" if config.zarr else ""
        return (
            f"Done: {self.done} denoised ({self.per_hour:.0f}/h), {self.skipped} already "
            f"done or quarantined, {len(self.quarantined)} quarantined, of {self.inputs}.\n"
            f"  denoised MRC:  {out / 'denoised'}\n{zarr_line}"
            f"  RELION STAR:   {self.star or 'none (nothing done)'}\n"
            f"  journal:       {config.layout.journal}"
        )


def find_inputs(inputs: list[Path], exclude: tuple[Path, ...] = ()) -> tuple[list[Path], Path]:
    """Micrographs named, or found below named directories with the daemon's rules
    (*.mrc, *.tif, *.tiff; hidden and temporary files skipped), none below `exclude`;
    returns them (absolute, sorted) with their common root directory."""
    found: set[Path] = set()
    for item in inputs:
        path = Path(os.path.abspath(item))
        if path.is_dir():
            found |= Discovery(path, polling=True).scan()
        elif path.is_file():
            found.add(path)
        else:
            raise ValueError(f"{item}: no such file or directory")
    skip = [Path(os.path.abspath(folder)) for folder in exclude]
    files = sorted(p for p in found if not any(p.is_relative_to(folder) for folder in skip))
    if not files:
        raise ValueError("no micrographs (*.mrc, *.tif, *.tiff) among the inputs")
    return files, common_folder(inputs)


def local_cluster(workers: int, threads_per_worker: int, gpu: bool) -> LocalCluster:
    """Worker processes on this machine (each with one GPU resource when `gpu`)."""
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        resources=GPU if gpu else None,
    )


def _write_lists(journal: Journal, layout: OutputLayout, optics: OpticsSettings) -> Path | None:
    """Write the session's lists (see `write_session_lists`); the micrographs STAR's path,
    None when nothing is done."""
    lists = SessionLists(layout, optics)
    lists.add_entries(journal.done_entries())
    lists.write()
    return layout.star if len(lists) else None


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("denoising"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f}/h"),
        TimeRemainingColumn(),
        console=console,
    )


def run_batch(
    inputs: list[Path],
    config: BatchConfig,
    client: Client,
    *,
    console: Console | None = None,
    on_result: Callable[[TaskResult], None] | None = None,
) -> BatchResult:
    """Denoise `inputs` (absolute paths below `config.root`) on the cluster of `client`.

    Shows the dashboard address and a progress bar on `console` if given; `on_result` sees
    each task's result once it is in the journal.
    """
    from streamdenoise.model.modelfile import default_model_path

    model = config.model or default_model_path()
    model_path = Path(os.path.abspath(model))
    options = OutputOptions(
        config.float16,
        config.zarr,
        config.thumbnails,
        str(model),
        diameter_angstrom=config.diameter_angstrom,
        thresholds=config.thresholds,
        picks_frame=config.picks_frame,
        diameter_source=config.diameter_source,
        reference=config.reference,
    )
    phash = processing_params_hash(
        model_path,
        config.settings,
        options,
        input_pixel_size=config.input_pixel_size,
        suffix=config.suffix,
    )
    gpu = config.device.strip().lower().startswith("cuda")
    workers = client.scheduler_info()["workers"].values()
    if gpu and workers and not any("GPU" in w.get("resources", {}) for w in workers):
        raise ValueError("--device cuda needs workers started with --resources GPU=1")
    client.register_plugin(ModelPlugin(model_path, config.device, model_digest(model_path)))
    layout = config.layout
    result = BatchResult(inputs=len(inputs))
    start = time.monotonic()
    with exclusive_lock(layout.lock), Journal(layout.journal) as journal:
        journal.reset_in_flight()
        todo = []
        for path in inputs:
            stat = path.stat()
            if journal.needs_processing(path, stat.st_size, stat.st_mtime_ns, phash):
                journal.mark_processing(path, stat.st_size, stat.st_mtime_ns, phash)
                todo.append(path)
        result.skipped = len(inputs) - len(todo)
        futures = {
            client.submit(
                denoise_task,
                path,
                layout,
                config.settings,
                options,
                config.input_pixel_size,
                pure=False,
                retries=config.retries,
                resources=GPU if gpu else None,
            ): path
            for path in todo
        }
        if console is not None:
            console.print(f"Dask dashboard: {client.dashboard_link}")
        progress = _progress(console) if console is not None else None
        task = progress.add_task("denoising", total=len(todo), rate=0.0) if progress else None
        try:
            with progress or nullcontext():
                for future in as_completed(futures):
                    try:
                        outcome = future.result()
                    except Exception as error:  # the task itself failed, e.g. KilledWorker
                        outcome = TaskResult(
                            futures[future], None, f"task failed: {error!r}", 0, ""
                        )
                    if outcome.outputs is not None:
                        journal.mark_done(outcome.path, outcome.outputs, None)
                        result.done += 1
                    else:
                        reason = outcome.error or "unknown error"
                        journal.quarantine(outcome.path, reason)
                        result.quarantined[outcome.path] = reason
                    if on_result is not None:
                        on_result(outcome)
                    if progress is not None and task is not None:
                        rate = result.done * 3600.0 / max(time.monotonic() - start, 1e-9)
                        progress.update(task, advance=1, rate=rate)
        except BaseException:
            client.cancel(list(futures))
            raise
        result.seconds = time.monotonic() - start
        result.star = _write_lists(journal, layout, config.optics)
    return result


def check_cluster(scheduler: str | None, workers: int | None, threads_per_worker: int) -> None:
    """ValueError, naming the options, for a cluster that `run_on_cluster` cannot start."""
    if scheduler is not None and workers is not None:
        raise ValueError("give --scheduler or --workers, not both")
    if threads_per_worker < 1 or (workers is not None and workers < 1):
        raise ValueError("--workers and --threads-per-worker must be at least 1")


def run_on_cluster(
    files: list[Path],
    config: BatchConfig,
    *,
    scheduler: str | None,
    workers: int | None,
    threads_per_worker: int,
    console: Console | None = None,
) -> BatchResult:
    """`run_batch` on the Dask scheduler at `scheduler`, or else on a `LocalCluster` of
    `workers` processes (default: one per GPU with a GPU device, else one per
    `threads_per_worker` CPU cores), closed at the end."""
    import torch

    check_cluster(scheduler, workers, threads_per_worker)
    gpus = torch.cuda.device_count() if scheduler is None else 0
    count, gpu = local_workers(
        config.device, workers, threads_per_worker, cpus=os.cpu_count() or 1, gpus=gpus
    )
    if gpu and config.device.strip().lower() == "auto":
        config = replace(config, device="cuda")  # this host's GPUs: one task per GPU at a time
    cluster = None if scheduler else local_cluster(count, threads_per_worker, gpu)
    try:
        with Client(scheduler or cluster) as client:
            return run_batch(files, config, client, console=console)
    finally:
        if cluster is not None:
            cluster.close()
