"""The live daemon: intake (discovery, completeness, journal check) → reader pool (read,
bin, noise estimate) → model stage (batched) → writer pool (statistics, outputs, journal).

One loop in the main thread is the intake and the model stage (`streamdenoise.stages`):
reads of the next batches and writes of the previous ones run on thread pools meanwhile,
so the model never waits for a write. A SIGTERM (which only sets a flag) stops intake; the
batch in the model stage finishes, read-ahead batches not started stay pending, every
write finishes, the lists are flushed and the daemon exits 0. A `kill -9` loses nothing:
the journal marks micrographs `processing` before work starts and the next start resets
them.

Failures are charged where they happen: a read or a write to its micrograph only; a
model-stage failure to each micrograph of its batch once (one attempt each), after which
those micrographs are retried one per batch, so a micrograph that breaks every batch it is
in cannot use up the attempts of the others.
"""

from __future__ import annotations

import logging
import os
import signal
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import numpy as np

from streamdenoise import __version__
from streamdenoise.config import WatchConfig
from streamdenoise.errors import StreamDenoiseError, one_line
from streamdenoise.io import atomic_write_text
from streamdenoise.io.jsontext import json_text
from streamdenoise.lock import exclusive_lock
from streamdenoise.outputs import (
    DoneMicrograph,
    OutputLayout,
    remove_temporaries,
    write_session_lists,
)
from streamdenoise.processing import (
    DEFAULT_DIAMETER,
    OutputOptions,
    Results,
    denoise_prepared,
    processing_params_hash,
    read_prepared,
    write_results,
)
from streamdenoise.runtime import log_text
from streamdenoise.sdnotify import Notifier
from streamdenoise.snapshot import MicrographSummary, Snapshot, summary_line
from streamdenoise.stages import Pipeline, Stage, Stages
from streamdenoise.stats.readiness import ReadinessThresholds, session_statistics
from streamdenoise.watch import CompletenessTracker, Discovery, Journal
from streamdenoise.watch.discovery import is_network_filesystem

if TYPE_CHECKING:
    from streamdenoise.model.inference import Denoised
    from streamdenoise.model.pipeline import Prepared
    from streamdenoise.session_adaptation import SessionAdapter

log = logging.getLogger("streamdenoise.daemon")
RECENT = 20
SESSION_WINDOW = 2000
"""Micrographs kept (as small statistics records) for the session's distributions."""
READERS = 2
"""Reader threads (read, bin, noise estimate: numpy releases the GIL)."""
WRITERS = 2
"""Writer threads (statistics and outputs)."""
LONG_CALL_LIMIT = 1800.0
"""Seconds a model call (a compilation, a batch) keeps the systemd watchdog fed: one that
hangs longer stops the pings, and systemd restarts the daemon."""


def resident_memory_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class _Ready:
    path: Path
    size: int
    mtime_ns: int


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


@dataclass
class _Counters:
    latencies: deque = field(default_factory=lambda: deque(maxlen=1000))
    finished_at: deque = field(default_factory=deque)  # the last hour's (pruned when read)
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    statistics: deque = field(default_factory=lambda: deque(maxlen=SESSION_WINDOW))
    queue_depths: deque = field(default_factory=lambda: deque(maxlen=SESSION_WINDOW))
    guard_fallbacks: int = 0


class Daemon:
    """`streamdenoise watch`: process every finished micrograph of `config.watch_dir`."""

    def __init__(
        self,
        config: WatchConfig,
        *,
        notifier: Notifier | None = None,
        on_snapshot: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.config = config
        self.layout = OutputLayout(
            config.watch_dir, config.output_dir, config.suffix, config.state_dir
        )
        self.notifier = notifier or Notifier.from_environment()
        self.on_snapshot = on_snapshot
        self._stop = threading.Event()
        self._counters = _Counters()
        self._pending: set[Path] = set()
        self._ready: dict[Path, _Ready] = {}
        self._found: set[Path] = set()
        self._done: dict[Path, DoneMicrograph] = {}  # input → what the session lists need
        self._alternate = False
        self._solo: set[Path] = set()  # in a batch that failed: retried one per batch
        self._lists_stale = False
        self._last_status = 0.0
        self.adapter: SessionAdapter | None = None
        self.started = time.time()
        self.snapshot = self._make_snapshot("starting")

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

    @contextmanager
    def _alive_while(self, limit: float = LONG_CALL_LIMIT) -> Iterator[None]:
        """Send `WATCHDOG=1` from a helper thread while the main thread is in a long model
        call (a compilation, a batch), for at most `limit` s; the loop pings otherwise."""
        interval = self.notifier.watchdog_interval()
        if interval is None:
            yield
            return
        finished = threading.Event()

        def ping() -> None:
            end = time.monotonic() + limit
            while not finished.wait(interval) and time.monotonic() < end:
                self.notifier.watchdog()

        thread = threading.Thread(target=ping, name="streamdenoise-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            finished.set()
            thread.join()

    # -- setup -----------------------------------------------------------------------------
    def _load_model(self) -> None:
        """Load, prepare and warm up the model (`streamdenoise.runtime`); set the settings,
        parameter hash and output options it implies."""
        from streamdenoise.engine.batches import default_batch_size
        from streamdenoise.model.pipeline import DenoiseSettings
        from streamdenoise.runtime import load_runtime, warm_up

        self.runtime = load_runtime(
            self.config.model, self.config.device, compile_model=self.config.compile
        )
        self.device = self.runtime.device
        self.loaded = self.runtime.loaded
        model_path = self.config.model or self.runtime.model_path
        self.settings = DenoiseSettings(
            bin_factor=self.config.bin,
            target_pixel_size=self.config.pixel_size,
            tile=self.config.tile,
            overlap=self.config.overlap,
            batch_size=self.config.batch_size or default_batch_size(self.device),
            guard=self.config.guard,
            background_scale=self.config.background_scale,
        )
        self.output_options = OutputOptions(
            float16=self.config.float16,
            zarr=self.config.zarr,
            thumbnails=self.config.thumbnails,
            model_label=str(model_path),
            diameter_angstrom=(self.config.particle_diameter or DEFAULT_DIAMETER)
            if self.config.statistics
            else None,
            thresholds=ReadinessThresholds.from_dict(self.config.readiness),
            picks_frame=self.config.picks_frame,
        )
        self.params_hash = processing_params_hash(
            self.runtime.model_path,
            self.settings,
            self.output_options,
            input_pixel_size=self.config.input_pixel_size,
            suffix=self.config.suffix,
        )
        # Warm-up: one batch of the largest tile, so the first micrograph is not slow. A
        # compiled model compiles here, and once more for each smaller fitted tile that
        # micrographs need.
        self.notifier.status("compiling the model" if self.runtime.compiled else "warming up")
        with self._alive_while():
            ready = warm_up(
                self.runtime,
                self.settings.batch_size,
                self.config.tile,
                compile_requested=bool(self.config.compile),
                stopping=self._stop.is_set,
            )
        if ready:
            self.adapter = self._session_adapter(str(model_path))

    def _session_adapter(self, model_label: str) -> SessionAdapter | None:
        """The session adapter of `--adapt-after` (None when it is off)."""
        from streamdenoise.session_adaptation import ADAPTED_MODEL, AdaptationPlan, SessionAdapter

        if self.config.adapt_after == 0:
            return None
        diameter = self.config.particle_diameter or DEFAULT_DIAMETER
        plan = AdaptationPlan(
            after=self.config.adapt_after,
            steps=self.config.adapt_steps,
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
        self.output_options = replace(
            self.output_options,
            model_label=f"{self.output_options.model_label} adapted to this session "
            f"({self.layout.state / ADAPTED_MODEL})",
        )
        log.info("swapped in the model adapted to this session")

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped (signal, stop file); returns the exit status (0 after a drain)."""
        self.config.output_dir.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.layout.lock):
            if removed := remove_temporaries(self.layout):
                log.warning("removed %d temporary file(s) left by the last stop", removed)
            # The journal first: one that cannot be read stops the start before the model
            # loads, and is left as it is for recovery.
            with Journal(self.layout.journal, max_attempts=self.config.max_attempts) as journal:
                self.journal = journal
                self._publish("loading model")
                self._load_model()
                network = is_network_filesystem(self.config.watch_dir)
                polling = self.config.polling if self.config.polling is not None else network
                settle = self.config.settle_seconds * (3 if network else 1)
                self.tracker = CompletenessTracker(settle, self.config.timeout_seconds)
                resumed = journal.reset_in_flight()
                for entry in journal.done_entries():
                    self._add_done(entry.path, entry.outputs or {})
                if resumed:
                    log.warning(
                        "%d micrograph(s) were in flight at the last stop; redoing", resumed
                    )
                discovery = Discovery(
                    self.config.watch_dir,
                    include=self.config.include,
                    exclude=self.config.exclude,
                    recursive=self.config.recursive,
                    polling=polling,
                    rescan_interval=self.config.rescan_interval,
                )
                discovery.start()
                log.info(
                    "watching %s (%s, settle %.1f s) → %s on %s",
                    self.config.watch_dir,
                    "polling" if polling else "inotify",
                    settle,
                    self.config.output_dir,
                    self.device,
                )
                self.notifier.ready()
                pipeline = Pipeline(self._stages(), readers=READERS, writers=WRITERS)
                try:
                    try:
                        while not self._stop.is_set():
                            self._tick(discovery, pipeline)
                    finally:
                        discovery.stop()
                    pipeline.drain()
                finally:
                    pipeline.shutdown()
                self._requeue_unstarted()
                self._write_lists()
                self._publish("stopped", force=True)
            self._remove_stop_file()
            log.info("stopped cleanly")
            return 0

    def _tick(self, discovery: Discovery, pipeline: Pipeline) -> None:
        """Intake (new files, completeness, journal), then one step of the pipeline: the
        model stage on the next batch whose reads are done (or a wait of ≤ 0.25 s)."""
        discovery.ensure_alive()
        for path in discovery.poll_candidates():
            if not self._is_output(path):
                self._pending.add(path)
        self._check_pending()
        if self._stop_file_present():
            log.info("stop file found: draining")
            self.request_stop()
        while self._ready and pipeline.has_room() and not self._stop.is_set():
            pipeline.submit(self._start_batch())
        if pipeline.busy:
            pipeline.step(timeout=0.25)
        else:
            self._stop.wait(0.25)
        if self._lists_stale:
            self._write_lists()
        self.notifier.watchdog()
        self._publish("watching")

    def _is_output(self, path: Path) -> bool:
        resolved = path.resolve()
        return any(
            resolved.is_relative_to(folder.resolve())
            for folder in (self.config.output_dir, self.layout.state)
        )

    def _stop_file_present(self) -> bool:
        name = self.config.stop_file
        return bool(name) and (
            (self.config.watch_dir / name).exists() or (self.config.output_dir / name).exists()
        )

    def _remove_stop_file(self) -> None:
        for folder in (self.config.watch_dir, self.config.output_dir):
            (folder / self.config.stop_file).unlink(missing_ok=True)

    def _check_pending(self) -> None:
        for path in list(self._pending):
            try:
                stat = path.stat()
            except FileNotFoundError:
                self._pending.discard(path)
                self.tracker.forget(path)
                continue
            except OSError:
                continue  # a network hiccup: look again next tick
            if not self.journal.needs_processing(
                path, stat.st_size, stat.st_mtime_ns, self.params_hash
            ):
                self._pending.discard(path)
                self.tracker.forget(path)
                continue
            completeness = self.tracker.check(path)
            if completeness.state == "pending":
                continue
            self._pending.discard(path)
            self.tracker.forget(path)
            if completeness.state == "ready":
                self._found.add(path)
                self.journal.mark_seen(
                    path, completeness.size, completeness.mtime_ns, self.params_hash
                )
                self._ready[path] = _Ready(path, completeness.size, completeness.mtime_ns)
            elif completeness.state == "invalid":
                self._found.add(path)
                self.journal.mark_seen(
                    path, completeness.size, completeness.mtime_ns, self.params_hash
                )
                self.journal.quarantine(path, completeness.reason or "invalid")
                log.error("quarantined %s: %s", path, completeness.reason)
                self._remember(
                    MicrographSummary(path.name, "quarantined", error=completeness.reason)
                )

    def _next_batch(self) -> list[_Ready]:
        """The next micrographs in the configured order, at most `max_micrographs_per_batch`;
        one alone when it comes first and was in a batch that failed."""
        items = sorted(self._ready.values(), key=lambda r: r.mtime_ns)
        if self.config.order == "newest" or (self.config.order == "alternate" and self._alternate):
            items.reverse()
        self._alternate = not self._alternate
        if items and items[0].path in self._solo:
            batch = items[:1]
        else:
            batch = [i for i in items if i.path not in self._solo]
            batch = batch[: self.config.max_micrographs_per_batch]
        for item in batch:
            del self._ready[item.path]
        return batch

    def _start_batch(self) -> list[_Ready]:
        """The next batch, marked `processing` in the journal."""
        batch = self._next_batch()
        for item in batch:
            self.journal.mark_processing(item.path, item.size, item.mtime_ns, self.params_hash)
        return batch

    # -- the pipeline's stages -------------------------------------------------------------
    def _stages(self) -> Stages[_Ready, Prepared, Denoised, _Written]:
        return Stages(
            read=self._read,
            model=self._denoise,
            write=self._write,
            done=self._written,
            failed=self._failed,
            released=self._released,
        )

    def _read(self, item: _Ready) -> Prepared:
        """Reader thread: read, bin and estimate the noise of one micrograph."""
        return read_prepared(
            item.path, self.loaded.pixel_size, self.settings, self.config.input_pixel_size
        )

    def _denoise(self, prepared: list[Prepared]) -> list[Denoised]:
        """The model stage (main thread): a batch's micrographs share network batches."""
        self._swap_in_adapted_model()
        with self._alive_while():
            return denoise_prepared(prepared, self.runtime.network, self.settings, self.device)

    def _write(
        self, item: _Ready, prepared: Prepared, denoised: Denoised, seconds: float
    ) -> _Written:
        """Writer thread: statistics and outputs of one micrograph, then the journal (done)
        and the session adapter (offered the micrograph)."""
        results = write_results(
            self.layout, item.path, prepared, denoised, seconds, self.output_options
        )
        latency = time.time() - item.mtime_ns / 1e9
        self.journal.mark_done(item.path, results.outputs, latency)
        if self.adapter is not None:
            self.adapter.offer(prepared.image, prepared.sigma)
        return _Written(results, latency, time.time(), prepared.sigma, seconds)

    def _written(self, item: _Ready, written: _Written) -> None:
        """Main thread: count a finished micrograph."""
        self._solo.discard(item.path)
        results = written.results
        self._add_done(item.path, results.outputs)
        self._lists_stale = True
        statistics = results.statistics
        if statistics is not None:
            self._counters.statistics.append(statistics)
            self._counters.queue_depths.append(len(self._ready) + len(self._pending))
        self._counters.latencies.append(written.latency)
        self._counters.finished_at.append(written.finished)
        guard = results.guard
        if guard is not None and not guard.passed:
            self._counters.guard_fallbacks += 1
            log.warning("%s: %s", item.path, guard.summary())
        self._remember(
            MicrographSummary(
                item.path.name,
                "done",
                latency=written.latency,
                noise_sigma=written.noise_sigma,
                pixel_size=results.pixel_size,
                seconds=written.seconds,
                verdict=None if statistics is None else statistics.verdict,
                candidates=None if statistics is None else statistics.candidates,
                cnr=None if statistics is None else statistics.cnr,
                guard=None if guard is None else ("passed" if guard.passed else "fallback"),
            )
        )

    def _failed(self, items: list[_Ready], stage: Stage, error: BaseException) -> None:
        """Main thread: charge a failure to `items` (a read's or write's: one micrograph;
        the model stage's: each of its batch once, then retried one per batch). A model
        failure while stopping (a Ctrl-C or stop ended the compiler) charges nothing."""
        if stage == "model":
            if self._stop.is_set():
                log.warning(
                    "stopped while denoising (%s); %d micrograph(s) stay pending",
                    one_line(error, 200),
                    len(items),
                )
                self._released(items)
                return
            log.error("denoising failed: %s", log_text(error))  # the whole output, once
            if len(items) > 1:
                self._solo.update(item.path for item in items)
            reason = f"denoising failed: {one_line(error, 200)}"
        elif stage == "write":
            reason = f"cannot write outputs: {error}"
        else:
            reason = str(error)
        for item in items:
            self._fail(item, reason)

    def _released(self, items: list[_Ready]) -> None:
        """Micrographs the model stage did not start before a stop: pending, no try used."""
        for item in items:
            self.journal.release(item.path)

    def _fail(self, item: _Ready, reason: str) -> None:
        state = self.journal.mark_failed(item.path, reason)
        log.error(
            "%s %s: %s", "quarantined" if state == "quarantined" else "failed", item.path, reason
        )
        self._remember(MicrographSummary(item.path.name, state, error=reason))
        if state == "quarantined":
            self._solo.discard(item.path)
        else:  # try again once it is looked at next
            self._pending.add(item.path)

    def _requeue_unstarted(self) -> None:
        """Ready micrographs never started stay `seen` in the journal: done on next start."""
        self._ready.clear()

    def _remember(self, summary: MicrographSummary) -> None:
        self._counters.recent.append(summary)

    def _add_done(self, source: Path, outputs: dict[str, str]) -> None:
        done = DoneMicrograph.from_journal(self.layout, source, outputs)
        if done is not None:
            self._done[done.source] = done

    def _write_lists(self) -> None:
        """Rewrite the session's lists (micrographs STAR, coordinate lists, OME-Zarr series)
        from the micrographs kept in memory (loaded from the journal once at start,
        added as they finish)."""
        self._lists_stale = False
        try:
            write_session_lists(self.layout, list(self._done.values()), self.config.optics())
        except (OSError, StreamDenoiseError) as error:  # e.g. a full disk: retried next batch
            log.error("cannot write the session's lists in %s: %s", self.layout.out_dir, error)

    # -- status ----------------------------------------------------------------------------
    def _make_snapshot(self, state: str) -> Snapshot:
        counts = self.journal.counts() if hasattr(self, "journal") else {}
        latencies = list(self._counters.latencies)
        now = time.time()
        session = None
        warnings: tuple[str, ...] = ()
        if self._counters.statistics:
            summary = session_statistics(
                list(self._counters.statistics), queue_depths=list(self._counters.queue_depths)
            )
            session, warnings = summary.to_dict(), summary.warnings
        finished = self._counters.finished_at
        while finished and finished[0] <= now - 3600:
            finished.popleft()
        elapsed = min(3600.0, max(now - self.started, 1.0))
        return Snapshot(
            version=__version__,
            state=state,
            watch_dir=str(self.config.watch_dir),
            out_dir=str(self.config.output_dir),
            device=str(getattr(self, "device", self.config.device)),
            started=self.started,
            updated=now,
            found=len(self._found),
            done=counts.get("done", 0),
            failed=counts.get("failed", 0),
            quarantined=counts.get("quarantined", 0),
            pending=len(self._pending),
            queued=len(self._ready),
            rate_per_hour=len(finished) * 3600.0 / elapsed,
            latency_median=statistics.median(latencies) if latencies else None,
            latency_p95=float(np.percentile(latencies, 95)) if latencies else None,
            memory_mib=resident_memory_mib(),
            recent=tuple(self._counters.recent),
            guard_fallbacks=self._counters.guard_fallbacks,
            warnings=warnings,
            session=session,
            adaptation=None if self.adapter is None else self.adapter.state,
        )

    def _publish(self, state: str, force: bool = False) -> None:
        self.snapshot = self._make_snapshot(state)
        if self.on_snapshot is not None:
            self.on_snapshot(self.snapshot)
        now = time.monotonic()
        if force or now - self._last_status >= min(self.config.status_interval, 2.0):
            self._last_status = now
            try:
                atomic_write_text(self.layout.status, json_text(self.snapshot.to_json(), indent=1))
            except OSError as error:
                log.error("cannot write %s: %s", self.layout.status, error)
            self.notifier.status(summary_line(self.snapshot))
