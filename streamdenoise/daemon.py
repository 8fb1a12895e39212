"""The live daemon: intake (discovery, completeness, journal check) → reader pool (read,
bin, noise estimate) → model stage (batched) → writer pool (statistics, outputs, journal).

One loop in the main thread is the intake and the model stage (`streamdenoise.stages`):
reads of the next batches and writes of the previous ones run on thread pools meanwhile,
so the model never waits for a write. A SIGTERM (which only sets a flag) stops intake; the
batch in the model stage finishes, read-ahead batches not started stay pending, every
write finishes, the lists are flushed and the daemon exits 0. A `kill -9` loses nothing:
the journal marks micrographs `processing` before work starts and the next start resets
them.

Failures are charged where they happen: a read or a write to its micrograph only. A
model-stage failure of a batch of several charges none of them: they are retried one per
batch, and only a micrograph that fails alone uses up an attempt, so one that breaks every
batch it is in cannot use up the attempts of the others.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from streamdenoise.background import start_in_background
from streamdenoise.config import Settings
from streamdenoise.dashboard import HeadlessReporter, render
from streamdenoise.errors import StreamDenoiseError, one_line
from streamdenoise.lock import exclusive_lock
from streamdenoise.outputs import OutputLayout, SessionLists, remove_temporaries
from streamdenoise.processing import (
    DEFAULT_DIAMETER,
    Results,
    denoise_prepared,
    processing_params_hash,
    read_prepared,
    write_results,
)
from streamdenoise.runtime import log_text
from streamdenoise.sdnotify import Notifier
from streamdenoise.snapshot import MicrographSummary, Snapshot
from streamdenoise.stages import Pipeline, Stage, Stages
from streamdenoise.stats.diameter import DiameterEstimate, estimate_diameter
from streamdenoise.status import Progress, StatusBoard
from streamdenoise.watch import CompletenessTracker, Discovery, Journal
from streamdenoise.watch.discovery import is_network_filesystem
from streamdenoise.watch.intake import Intake, ReadyFile

if TYPE_CHECKING:
    import numpy as np
    import torch
    from rich.console import Console

    from streamdenoise.model.inference import Denoised
    from streamdenoise.model.pipeline import Prepared
    from streamdenoise.session_adaptation import SessionAdapter

log = logging.getLogger("streamdenoise.daemon")
READERS = 2
"""Reader threads (read, bin, noise estimate: numpy releases the GIL)."""
WRITERS = 2
"""Writer threads (statistics and outputs)."""
ESTIMATE_FROM = 5
"""Micrographs the particle diameter is estimated from when neither --particle-diameter
nor --reference gives it (until then, and if the estimate is not confident, the
statistics use `DEFAULT_DIAMETER`)."""
LONG_CALL_LIMIT = 1800.0
"""Seconds a model call (a compilation, a batch) keeps the systemd watchdog fed: one that
hangs longer stops the pings, and systemd restarts the daemon."""


@dataclass(frozen=True)
class _Written:
    """A micrograph's writes, done on a writer thread: the results, its latency (s from
    the input's mtime), the wall-clock time it finished (s since the epoch), its noise
    level σ̂ (normalised units) and its model-stage time (s)."""

    results: Results
    latency: float
    finished: float
    noise_sigma: float
    seconds: float

    def summary(self, name: str) -> MicrographSummary:
        """The micrograph's line for the dashboard."""
        statistics, guard = self.results.statistics, self.results.guard
        return MicrographSummary(
            name,
            "done",
            latency=self.latency,
            noise_sigma=self.noise_sigma,
            pixel_size=self.results.pixel_size,
            seconds=self.seconds,
            verdict=None if statistics is None else statistics.verdict,
            candidates=None if statistics is None else statistics.candidates,
            cnr=None if statistics is None else statistics.cnr,
            guard=None if guard is None else ("passed" if guard.passed else "fallback"),
            candidates_sigma=None if statistics is None else statistics.candidates_sigma,
        )


class ModelStage:
    """The daemon's model: loaded, prepared and warmed up once (`streamdenoise.runtime`),
    the denoising settings, output options and parameter hash it implies, and the session
    adapter of `--adapt-after`. `stopping()` tells a warm-up to give up."""

    def __init__(
        self,
        config: Settings,
        layout: OutputLayout,
        notifier: Notifier,
        stopping: Callable[[], bool],
    ) -> None:
        self.config = config
        self.layout = layout
        self.notifier = notifier
        self.stopping = stopping
        self.device: torch.device | None = None
        self.adapter: SessionAdapter | None = None
        self._options_lock = threading.Lock()  # replacing `output_options` (two threads)
        self._diameter_images: list[np.ndarray] | None = None  # while estimating
        self.diameter_estimate: DiameterEstimate | None = None

    def load(self) -> None:
        """Load, prepare and warm up the model (`streamdenoise.runtime`); set the settings,
        parameter hash and output options it implies."""
        from streamdenoise.engine.batches import PRECISIONS, default_batch_size
        from streamdenoise.runtime import load_runtime, warm_up

        self.runtime = load_runtime(
            self.config.denoise.model,
            self.config.denoise.device,
            compile_model=self.config.denoise.compile,
            dtype=PRECISIONS[self.config.denoise.precision],
        )
        self.device = self.runtime.device
        self.loaded = self.runtime.loaded
        model_path = self.config.denoise.model or self.runtime.model_path
        self.settings = self.config.denoise.settings(default_batch_size(self.device))
        statistics = self.config.readiness.statistics
        diameter, source = self._initial_diameter()
        estimating = statistics and source.startswith("default")
        self._diameter_images = [] if estimating else None
        self.output_options = replace(
            self.config.output_options(str(model_path)),
            diameter_angstrom=diameter if statistics else None,
            diameter_source=source,
        )
        if statistics:
            log.info("particle diameter %.0f Å (%s)", diameter, source)
        self.params_hash = processing_params_hash(
            self.runtime.model_path,
            self.settings,
            self.output_options,
            input_pixel_size=self.config.denoise.input_pixel_size,
            suffix=self.config.outputs.suffix,
            estimated_diameter=estimating,
        )
        # Warm-up: one batch of the largest tile, so the first micrograph is not slow. A
        # compiled model compiles here, and once more for each smaller fitted tile that
        # micrographs need.
        self.notifier.status("compiling the model" if self.runtime.compiled else "warming up")
        with self.notifier.alive_while(LONG_CALL_LIMIT):
            ready = warm_up(
                self.runtime,
                self.settings.batch_size,
                self.config.denoise.tile,
                compile_requested=bool(self.config.denoise.compile),
                stopping=self.stopping,
            )
        if ready:
            self.adapter = self._session_adapter(str(model_path))

    def _initial_diameter(self) -> tuple[float, str]:
        """The particle diameter (Å) the statistics start with and where it comes from:
        --particle-diameter ("given"), else --reference's `Scatterers.diameter`
        ("reference NAME"), else `DEFAULT_DIAMETER` until the estimate from the first
        `ESTIMATE_FROM` micrographs ("default…")."""
        known = self.config.readiness.known_diameter()
        if known is not None:
            return known
        return DEFAULT_DIAMETER, f"default; estimating from the first {ESTIMATE_FROM} micrographs"

    def offer_for_diameter(
        self, denoised: np.ndarray, pixel_size: float, *, wait: bool = False
    ) -> None:
        """Writer thread: keep a denoised micrograph (H, W) at the working pixel size for
        the diameter estimate; with `ESTIMATE_FROM` of them, estimate once (in a background
        thread, so no write waits for it; `wait`: here) and use it."""
        with self._options_lock:
            images = self._diameter_images
            if images is None:
                return
            images.append(denoised)
            if len(images) < ESTIMATE_FROM:
                return
            self._diameter_images = None

        def estimate() -> None:
            self._use_estimate(estimate_diameter(images, pixel_size), len(images))

        if wait:
            estimate()
        else:
            start_in_background("diameter-estimate", estimate)

    def _use_estimate(self, estimate: DiameterEstimate | None, micrographs: int) -> None:
        """Use a confident diameter estimate from now on (micrographs already written keep
        theirs: nothing is recomputed); otherwise keep the default and say why."""
        self.diameter_estimate = estimate
        with self._options_lock:
            options = self.output_options
            if estimate is not None and estimate.confident:
                source = f"estimated from {micrographs} micrographs"
                diameter = estimate.diameter_angstrom
            else:
                found = (
                    "no particles found"
                    if estimate is None
                    else f"{estimate.diameter_angstrom:.0f} ± "
                    f"{estimate.uncertainty_angstrom:.0f} Å from {estimate.peaks} particles"
                )
                source = f"default; the estimate from {micrographs} micrographs is uncertain"
                source += f" ({found})"
                diameter = options.diameter_angstrom
            self.output_options = replace(
                options, diameter_angstrom=diameter, diameter_source=source
            )
        if estimate is not None and estimate.confident:
            log.info(
                "particle diameter %.0f ± %.0f Å, %s (%d particles); the micrographs already "
                "written keep %.0f Å (nothing is recomputed)",
                diameter,
                estimate.uncertainty_angstrom,
                source,
                estimate.peaks,
                options.diameter_angstrom,
            )
        else:
            log.warning("particle diameter: %.0f Å (%s)", diameter, source)

    def diameter_status(self) -> dict | None:
        """The statistics' particle diameter for status.json: Å, its source and the
        estimate (None before the model is loaded or without statistics)."""
        options = getattr(self, "output_options", None)
        if options is None or options.diameter_angstrom is None:
            return None
        estimate = self.diameter_estimate
        return {
            "angstrom": round(options.diameter_angstrom, 1),
            "source": options.diameter_source,
            "estimate": None if estimate is None else estimate.to_dict(),
        }

    def _session_adapter(self, model_label: str) -> SessionAdapter | None:
        """The session adapter of `--adapt-after` (None when it is off)."""
        from streamdenoise.session_adaptation import ADAPTED_MODEL, AdaptationPlan, SessionAdapter

        if self.config.watch.adapt_after == 0:
            return None
        diameter = self.output_options.diameter_angstrom or DEFAULT_DIAMETER
        plan = AdaptationPlan(
            after=self.config.watch.adapt_after,
            steps=self.config.watch.adapt_steps,
            diameter=diameter / self.loaded.pixel_size,
            pixel_size=self.loaded.pixel_size,
            save_to=self.layout.state / ADAPTED_MODEL,
            provenance={
                "trained_by": "streamdenoise watch --adapt-after",
                "initial_model": model_label,
                "initial_provenance": self.loaded.provenance,
                "objective": "blind-spot adaptation (noisy data only)",
                "watch_dir": str(self.config.watch_dir),
                "particle_diameter_angstrom": diameter,
            },
        )
        return SessionAdapter(self.loaded.model, plan, self.device)

    def _swap_in_adapted_model(self) -> None:
        """Take a finished session adaptation; swap its model in when it improved."""
        from streamdenoise.session_adaptation import ADAPTED_MODEL

        result = self.adapter.take() if self.adapter is not None else None
        if result is None or not result.improved:
            return
        self.runtime.swap(result.model)
        with self._options_lock:
            self.output_options = replace(
                self.output_options,
                model_label=f"{self.output_options.model_label} adapted to this session "
                f"({self.layout.state / ADAPTED_MODEL})",
            )
        log.info("swapped in the model adapted to this session")

    def read(self, path: Path) -> Prepared:
        """Reader thread: read, bin and estimate the noise of one micrograph."""
        return read_prepared(
            path, self.loaded.pixel_size, self.settings, self.config.denoise.input_pixel_size
        )

    def denoise(self, prepared: list[Prepared]) -> list[Denoised]:
        """The model stage (main thread): a batch's micrographs share network batches."""
        self._swap_in_adapted_model()
        with self._options_lock:
            null = self.output_options.denoiser_null
        with self.notifier.alive_while(LONG_CALL_LIMIT):
            return denoise_prepared(
                prepared, self.runtime.network, self.settings, self.device, null=null
            )


def charge_failure(
    intake: Intake,
    status: StatusBoard,
    items: list[ReadyFile],
    stage: Stage,
    error: BaseException,
    stopping: bool,
) -> None:
    """The failure policy: charge a failure at `stage` to `items` in `intake` and say it on
    `status` (a read's or write's: one micrograph; the model stage's: the micrograph when
    it was alone; a batch of several is charged nothing and retried one per batch). A
    model failure while `stopping` (a Ctrl-C or stop ended the compiler) charges nothing:
    the micrographs stay pending."""
    if stage == "model":
        if stopping:
            log.warning(
                "stopped while denoising (%s); %d micrograph(s) stay pending",
                one_line(error, 200),
                len(items),
            )
            intake.release(items)
            return
        log.error("denoising failed: %s", log_text(error))  # the whole output, once
        if len(items) > 1:
            log.warning("retrying the %d micrographs of that batch one at a time", len(items))
            intake.retry_alone(items)
            return
        reason = f"denoising failed: {one_line(error, 200)}"
    elif stage == "write":
        reason = f"cannot write outputs: {error}"
    else:
        reason = str(error)
    for item in items:
        state = intake.fail(item, reason)
        log.error(
            "%s %s: %s", "quarantined" if state == "quarantined" else "failed", item.path, reason
        )
        status.remember(MicrographSummary(item.path.name, state, error=reason))


class Daemon:
    """`streamdenoise watch`: process every finished micrograph of `config.watch_dir`.

    The parts: `model` (the resident model and what it implies), `intake` (completeness,
    journal check, batches; made once the journal is open), `lists` (the session's STAR
    and coordinate lists), `status` (counters, snapshots, status.json); this class runs
    them: lock, signals, the loop and the pipeline's callbacks (failures: `charge_failure`).
    """

    def __init__(
        self,
        config: Settings,
        *,
        notifier: Notifier | None = None,
        on_snapshot: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.config = config
        self.layout = OutputLayout(
            config.watch_dir, config.output_dir, config.outputs.suffix, config.outputs.state_dir
        )
        self.notifier = notifier or Notifier.from_environment()
        self._stop = threading.Event()
        self.model = ModelStage(config, self.layout, self.notifier, self._stop.is_set)
        self.lists = SessionLists(self.layout, config.outputs.optics())
        self.status = StatusBoard(
            config.watch_dir,
            config.output_dir,
            self.layout.status,
            config.display.status_interval,
            self.notifier,
            on_snapshot,
        )
        self.journal: Journal | None = None
        self.intake: Intake | None = None
        self.pipeline: Pipeline | None = None
        self._lists_stale = False
        self.snapshot = self.status.snapshot("starting", self._progress())

    # -- control ---------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        """Stop intake; the work in flight finishes, then the daemon exits. Tells systemd
        `STOPPING=1` now, at the request, not after the drain (signal-safe: it runs in the
        main thread between bytecodes; the notifier opens a socket per message)."""
        if not self._stop.is_set():
            self._stop.set()
            self.notifier.stopping()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("received %s: draining", signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped (signal, stop file); returns the exit status (0 after a drain)."""
        self.config.output_dir.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.layout.lock):
            if removed := remove_temporaries(self.layout):
                log.warning("removed %d temporary file(s) left by the last stop", removed)
            # The journal first: one that cannot be read stops the start before the model
            # loads, and is left as it is for recovery.
            with Journal(
                self.layout.journal, max_attempts=self.config.watch.max_attempts
            ) as journal:
                self.journal = journal
                self._publish("loading model")
                self.model.load()
                network = is_network_filesystem(self.config.watch_dir)
                polling = (
                    self.config.watch.polling if self.config.watch.polling is not None else network
                )
                settle = self.config.watch.settle_seconds * (3 if network else 1)
                self.intake = Intake(
                    journal,
                    CompletenessTracker(settle, self.config.watch.timeout_seconds),
                    self.model.params_hash,
                    order=self.config.watch.order,
                    max_batch=self.config.denoise.max_micrographs_per_batch,
                    recheck_interval=self.config.watch.rescan_interval,
                    on_quarantined=self._quarantined,
                )
                resumed = journal.reset_in_flight()
                self.lists.add_entries(journal.done_entries())
                if resumed:
                    log.warning(
                        "%d micrograph(s) were in flight at the last stop; redoing", resumed
                    )
                discovery = Discovery(
                    self.config.watch_dir,
                    include=self.config.watch.include,
                    exclude=self.config.watch.exclude,
                    recursive=self.config.watch.recursive,
                    polling=polling,
                    rescan_interval=self.config.watch.rescan_interval,
                    skip=(self.config.output_dir, self.layout.state),
                )
                discovery.start()
                log.info(
                    "watching %s (%s, settle %.1f s) → %s on %s",
                    self.config.watch_dir,
                    "polling" if polling else "inotify",
                    settle,
                    self.config.output_dir,
                    self.model.runtime.label,
                )
                self.notifier.ready()
                self.pipeline = pipeline = Pipeline(
                    self._stages(), readers=READERS, writers=WRITERS
                )
                try:
                    try:
                        while not self._stop.is_set():
                            self._tick(discovery, pipeline, self.intake)
                    finally:
                        discovery.stop()
                    pipeline.drain()
                finally:
                    pipeline.shutdown()
                self.intake.drop_unstarted()
                self._write_lists()
                self._publish("stopped", force=True)
            self._remove_stop_file()
            log.info("stopped cleanly")
            return 0

    def _tick(self, discovery: Discovery, pipeline: Pipeline, intake: Intake) -> None:
        """Intake (new files, completeness, journal), then one step of the pipeline: the
        model stage on the next batch whose reads are done (or a wait of ≤ 0.25 s)."""
        discovery.ensure_alive()
        intake.offer(discovery.poll_candidates())
        intake.offer_retried()
        intake.check_pending()
        if self._stop_file_present():
            log.info("stop file found: draining")
            self.request_stop()
        while intake.ready and pipeline.has_room() and not self._stop.is_set():
            pipeline.submit(intake.start_batch())
        if pipeline.busy:
            pipeline.step(timeout=0.25)
        else:
            self._stop.wait(0.25)
        if self._lists_stale:
            self._write_lists()
        self.notifier.watchdog()
        self._publish("watching")

    def _stop_file_present(self) -> bool:
        name = self.config.watch.stop_file
        return bool(name) and (
            (self.config.watch_dir / name).exists() or (self.config.output_dir / name).exists()
        )

    def _remove_stop_file(self) -> None:
        for folder in (self.config.watch_dir, self.config.output_dir):
            (folder / self.config.watch.stop_file).unlink(missing_ok=True)

    def _quarantined(self, path: Path, reason: str) -> None:
        """Intake found `path` invalid (it is quarantined in the journal)."""
        log.error("quarantined %s: %s", path, reason)
        self.status.remember(MicrographSummary(path.name, "quarantined", error=reason))

    # -- the pipeline's stages -------------------------------------------------------------
    def _stages(self) -> Stages[ReadyFile, Prepared, Denoised, _Written]:
        return Stages(
            read=lambda item: self.model.read(item.path),
            model=self.model.denoise,
            write=self._write,
            done=self._written,
            failed=self._failed,
            released=self._released,
        )

    def _write(
        self, item: ReadyFile, prepared: Prepared, denoised: Denoised, seconds: float
    ) -> _Written:
        """Writer thread: statistics and outputs of one micrograph, then the journal (done),
        the session adapter and the diameter estimate (both offered the micrograph)."""
        results = write_results(
            self.layout,
            item.path,
            prepared,
            denoised,
            seconds,
            self.model.output_options,
            self.model.device,
        )
        self.model.offer_for_diameter(denoised.image, prepared.pixel_size)
        latency = time.time() - item.mtime_ns / 1e9
        assert self.journal is not None
        self.journal.mark_done(item.path, results.outputs, latency)
        if self.model.adapter is not None:
            self.model.adapter.offer(prepared.image, prepared.sigma)
        return _Written(results, latency, time.time(), prepared.sigma, seconds)

    def _written(self, item: ReadyFile, written: _Written) -> None:
        """Main thread: count a finished micrograph."""
        assert self.intake is not None
        self.intake.done(item)
        results = written.results
        self.lists.add(item.path, results.outputs)
        self._lists_stale = True
        guard = results.guard
        if guard is not None and not guard.passed:
            log.warning("%s: %s", item.path, guard.summary())
        queue_depth = len(self.intake.ready) + len(self.intake.pending)
        summary = written.summary(item.path.name)
        self.status.count_done(summary, written.finished, results.statistics, queue_depth)

    def _failed(self, items: list[ReadyFile], stage: Stage, error: BaseException) -> None:
        """Main thread: `charge_failure` of `items` (stopping: whether a stop was asked)."""
        assert self.intake is not None
        charge_failure(self.intake, self.status, items, stage, error, self._stop.is_set())

    def _released(self, items: list[ReadyFile]) -> None:
        """Micrographs the model stage did not start before a stop: pending, no try used."""
        assert self.intake is not None
        self.intake.release(items)

    def _write_lists(self) -> None:
        """Rewrite the session's lists (micrographs STAR, coordinate lists, OME-Zarr series)
        from the micrographs kept in memory (loaded from the journal once at start,
        added as they finish)."""
        self._lists_stale = False
        try:
            self.lists.write()
        except (OSError, StreamDenoiseError) as error:  # e.g. a full disk: retried next batch
            log.error("cannot write the session's lists in %s: %s", self.layout.out_dir, error)

    # -- status ----------------------------------------------------------------------------
    def _progress(self) -> Progress:
        """What the journal, the intake and the model know now, for the snapshot."""
        intake = self.intake
        adapter = self.model.adapter
        return Progress(
            counts=self.journal.counts() if self.journal is not None else {},
            found=len(intake.found) if intake else 0,
            pending=len(intake.pending) if intake else 0,
            queued=len(intake.ready) if intake else 0,
            device=(
                self.config.denoise.device
                if self.model.device is None
                else self.model.runtime.label
            ),
            adaptation=None if adapter is None else adapter.state,
            particle_diameter=self.model.diameter_status(),
            model_busy_seconds=self.pipeline.model_seconds if self.pipeline else 0.0,
        )

    def _publish(self, state: str, force: bool = False) -> None:
        self.snapshot = self.status.publish(state, self._progress(), force=force)


def run_daemon(
    settings: Settings,
    console: Console,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    on_start: Callable[[Daemon], None] | None = None,
) -> int:
    """Run the daemon with the live dashboard on `console` (a terminal), or headless (log
    lines); returns its exit code. on_snapshot(snapshot) sees every published snapshot;
    on_start(daemon) is called once the daemon exists (the demo stops it from there)."""
    import sys

    from rich.live import Live

    headless = settings.display.headless
    headless = not sys.stderr.isatty() if headless is None else headless
    if headless:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    else:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False)
        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler])
    reporter = HeadlessReporter(settings.display.status_interval) if headless else None

    def publish(snapshot: Snapshot) -> None:
        if reporter is not None:
            reporter(snapshot)
        if on_snapshot is not None:
            on_snapshot(snapshot)

    daemon = Daemon(settings, on_snapshot=publish)
    daemon.install_signal_handlers()
    if on_start is not None:
        on_start(daemon)
    if headless:
        return daemon.run()
    with Live(
        get_renderable=lambda: render(daemon.snapshot), console=console, refresh_per_second=2
    ):
        return daemon.run()
