"""The live daemon: watch → ready → read/bin → denoise (batched) → write → journal.

One loop in the main thread orchestrates; reading and writing run on a small thread pool
and the model runs in the loop, so a SIGTERM (which only sets a flag) lets the batch in
flight finish, then the daemon flushes and exits 0. A `kill -9` loses nothing: the journal
marks micrographs `processing` before work starts and the next start resets them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import numpy as np

from streamdenoise import __version__
from streamdenoise.config import WatchConfig
from streamdenoise.errors import DeviceError, StreamDenoiseError, one_line
from streamdenoise.io import atomic_write_text
from streamdenoise.io.jsontext import json_text
from streamdenoise.outputs import DoneMicrograph, OutputLayout, write_session_lists
from streamdenoise.processing import (
    DEFAULT_DIAMETER,
    OutputOptions,
    processing_params_hash,
    read_prepared,
    write_results,
)
from streamdenoise.sdnotify import Notifier
from streamdenoise.snapshot import MicrographSummary, Snapshot, summary_line
from streamdenoise.stats.readiness import ReadinessThresholds, session_statistics
from streamdenoise.watch import Discovery, Journal, ReadinessTracker
from streamdenoise.watch.discovery import is_network_filesystem

if TYPE_CHECKING:
    from streamdenoise.model.inference import Denoised
    from streamdenoise.session_adaptation import SessionAdapter

log = logging.getLogger("streamdenoise.daemon")
RECENT = 20
SESSION_WINDOW = 2000
"""Micrographs kept (as small statistics records) for the session's distributions."""
LOG_LIMIT = 4000
"""Characters of a model-stage error (e.g. a compiler's output) logged, once."""


def _log_text(error: BaseException) -> str:
    """`error` for the log: its text cut to LOG_LIMIT characters (compilers say a lot)."""
    text = f"{type(error).__name__}: {error}"
    if len(text) <= LOG_LIMIT:
        return text
    return f"{text[:LOG_LIMIT]}… ({len(text) - LOG_LIMIT:,} more characters)"


class AlreadyRunning(StreamDenoiseError, RuntimeError):
    """Another daemon holds the output directory's lock."""


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
        self._last_status = 0.0
        self.adapter: SessionAdapter | None = None
        self.started = time.time()
        self.snapshot = self._make_snapshot("starting")

    # -- control ---------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        """Stop intake; the batch in flight finishes, then the daemon exits (signal-safe)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("received %s: draining", signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- setup -----------------------------------------------------------------------------
    def _lock(self) -> int:
        out = self.layout.state
        out.mkdir(parents=True, exist_ok=True)
        self.config.output_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            os.close(descriptor)
            raise AlreadyRunning(
                f"another streamdenoise (pid {holder or '?'}) is already writing to {out}"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        return descriptor

    def _load_model(self):
        import torch

        from streamdenoise.engine.batches import (
            compile_by_default,
            default_batch_size,
            is_compiled,
            prepare_model,
        )
        from streamdenoise.engine.device import resolve_device
        from streamdenoise.model.modelfile import default_model_path, load_model
        from streamdenoise.model.pipeline import DenoiseSettings

        self.device = resolve_device(self.config.device)
        model_path = self.config.model or default_model_path()
        self.loaded = load_model(model_path, device=self.device)
        self.settings = DenoiseSettings(
            bin_factor=self.config.bin,
            target_pixel_size=self.config.pixel_size,
            tile=self.config.tile,
            overlap=self.config.overlap,
            batch_size=self.config.batch_size or default_batch_size(self.device),
            guard=self.config.guard,
            background_scale=self.config.background_scale,
        )
        self.params_hash = processing_params_hash(
            model_path,
            self.settings,
            input_pixel_size=self.config.input_pixel_size,
            float16=self.config.float16,
            suffix=self.config.suffix,
            picks_frame=self.config.picks_frame,
        )
        compile_model = (
            self.config.compile
            if self.config.compile is not None
            else compile_by_default(self.device)
        )
        self.model = prepare_model(self.loaded.model, self.device, compile_model=compile_model)
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
        # Warm-up: one batch of the largest tile, so the first micrograph is not slow. A
        # compiled model compiles here, and once more for each smaller fitted tile that
        # micrographs need; a compilation that fails when nobody asked for it falls back
        # to the eager model, one that was asked for is an error.
        self.notifier.status("compiling the model" if compile_model else "warming up")
        warm_up = torch.zeros(
            self.settings.batch_size, 1, self.config.tile, self.config.tile, device=self.device
        )
        with torch.inference_mode():
            try:
                self.model(warm_up)
            except Exception as error:
                if self._stop.is_set():  # a Ctrl-C or stop also ends the compiler's processes
                    log.info("stopped during warm-up (%s)", one_line(error, 200))
                    return
                log.error("warm-up failed: %s", _log_text(error))
                if not compile_model or self.config.compile:
                    raise DeviceError(
                        f"the model failed on {self.device}: {one_line(error, 200)} (the log "
                        "has the whole message)" + ("; try --no-compile" if compile_model else "")
                    ) from error
                log.warning("torch.compile failed; running the model eagerly")
                self.model = prepare_model(self.loaded.model, self.device, compile_model=False)
                self.model(warm_up)
        mode = "compiled" if is_compiled(self.model) else "eager"
        log.info("model ready on %s (%s)", self.device, mode)
        self._compile_model = is_compiled(self.model)
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
        from streamdenoise.engine.batches import prepare_model
        from streamdenoise.session_adaptation import ADAPTED_MODEL

        result = self.adapter.take() if self.adapter is not None else None
        if result is None or not result.improved:
            return
        self.model = prepare_model(result.model, self.device, compile_model=self._compile_model)
        self.output_options = replace(
            self.output_options,
            model_label=f"{self.output_options.model_label} adapted to this session "
            f"({self.layout.state / ADAPTED_MODEL})",
        )
        log.info("swapped in the model adapted to this session")

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped (signal, stop file); returns the exit status (0 after a drain)."""
        lock = self._lock()
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="streamdenoise-io")
        try:
            # The journal first: one that cannot be read stops the start before the model
            # loads, and is left as it is for recovery.
            with Journal(self.layout.journal, max_attempts=self.config.max_attempts) as journal:
                self.journal = journal
                self._publish("loading model")
                self._load_model()
                network = is_network_filesystem(self.config.watch_dir)
                polling = self.config.polling if self.config.polling is not None else network
                settle = self.config.settle_seconds * (3 if network else 1)
                self.tracker = ReadinessTracker(settle, self.config.timeout_seconds)
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
                try:
                    while not self._stop.is_set():
                        self._tick(discovery, pool)
                finally:
                    discovery.stop()
                self._requeue_unstarted()
                self._write_lists()
                self._publish("stopped", force=True)
            self.notifier.stopping()
            self._remove_stop_file()
            log.info("stopped cleanly")
            return 0
        finally:
            pool.shutdown(wait=True)
            os.close(lock)

    def _tick(self, discovery: Discovery, pool: ThreadPoolExecutor) -> None:
        discovery.ensure_alive()
        for path in discovery.poll_candidates():
            if not self._is_output(path):
                self._pending.add(path)
        self._check_pending()
        if self._stop_file_present():
            log.info("stop file found: draining")
            self._stop.set()
        if self._ready and not self._stop.is_set():
            self._process_batch(pool)
        else:
            self._stop.wait(0.25)
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
            readiness = self.tracker.check(path)
            if readiness.state == "pending":
                continue
            self._pending.discard(path)
            self.tracker.forget(path)
            if readiness.state == "ready":
                self._found.add(path)
                self.journal.mark_seen(path, readiness.size, readiness.mtime_ns, self.params_hash)
                self._ready[path] = _Ready(path, readiness.size, readiness.mtime_ns)
            elif readiness.state == "invalid":
                self._found.add(path)
                self.journal.mark_seen(path, readiness.size, readiness.mtime_ns, self.params_hash)
                self.journal.quarantine(path, readiness.reason or "invalid")
                log.error("quarantined %s: %s", path, readiness.reason)
                self._remember(MicrographSummary(path.name, "quarantined", error=readiness.reason))

    def _next_batch(self) -> list[_Ready]:
        items = sorted(self._ready.values(), key=lambda r: r.mtime_ns)
        if self.config.order == "newest" or (self.config.order == "alternate" and self._alternate):
            items.reverse()
        self._alternate = not self._alternate
        batch = items[: self.config.max_micrographs_per_batch]
        for item in batch:
            del self._ready[item.path]
        return batch

    def _process_batch(self, pool: ThreadPoolExecutor) -> None:
        from streamdenoise.model.pipeline import denoise_prepared

        self._swap_in_adapted_model()
        batch = self._next_batch()
        start = time.perf_counter()
        for item in batch:
            self.journal.mark_processing(item.path, item.size, item.mtime_ns, self.params_hash)
        prepared = list(pool.map(self._read_and_prepare, batch))
        good = [(item, p) for item, p in zip(batch, prepared, strict=True) if p is not None]
        if not good:
            return
        try:
            denoised = denoise_prepared(
                [p for _, p in good], self.model, self.settings, self.device
            )
        except Exception as error:  # e.g. out of memory, a compiler that failed or was killed
            if self._stop.is_set():  # a Ctrl-C or stop ended the compiler: not a failure
                log.warning(
                    "stopped while denoising (%s); %d micrograph(s) stay pending",
                    one_line(error, 200),
                    len(good),
                )
                for item, _ in good:
                    self.journal.release(item.path)
                return
            log.error("denoising failed: %s", _log_text(error))  # the whole output, once
            for item, _ in good:
                self._fail(item, f"denoising failed: {one_line(error, 200)}")
            return
        compute = time.perf_counter() - start
        writes = [
            pool.submit(self._write, item, p, image, compute / len(good))
            for (item, p), image in zip(good, denoised, strict=True)
        ]
        for future in writes:
            future.result()
        del denoised, prepared, good
        self._write_lists()

    def _read_and_prepare(self, item: _Ready):
        try:
            return read_prepared(
                item.path, self.loaded.pixel_size, self.settings, self.config.input_pixel_size
            )
        except (StreamDenoiseError, ValueError, OSError) as error:
            self._fail(item, str(error))
            return None

    def _write(self, item: _Ready, prepared, denoised: Denoised, seconds: float) -> None:
        try:
            results = write_results(
                self.layout, item.path, prepared, denoised, seconds, self.output_options
            )
        except (OSError, ValueError) as error:
            self._fail(item, f"cannot write outputs: {error}")
            return
        latency = time.time() - item.mtime_ns / 1e9
        self.journal.mark_done(item.path, results.outputs, latency)
        if self.adapter is not None:
            self.adapter.offer(prepared.image, prepared.sigma)
        self._add_done(item.path, results.outputs)
        statistics = results.statistics
        if statistics is not None:
            self._counters.statistics.append(statistics)
            self._counters.queue_depths.append(len(self._ready) + len(self._pending))
        self._counters.latencies.append(latency)
        self._counters.finished_at.append(time.time())
        guard = denoised.guard
        if guard is not None and not guard.passed:
            self._counters.guard_fallbacks += 1
            log.warning("%s: %s", item.path, guard.summary())
        self._remember(
            MicrographSummary(
                item.path.name,
                "done",
                latency=latency,
                noise_sigma=prepared.sigma,
                pixel_size=prepared.pixel_size,
                seconds=seconds,
                verdict=None if statistics is None else statistics.verdict,
                candidates=None if statistics is None else statistics.candidates,
                cnr=None if statistics is None else statistics.cnr,
                guard=None if guard is None else ("passed" if guard.passed else "fallback"),
            )
        )

    def _fail(self, item: _Ready, reason: str) -> None:
        state = self.journal.mark_failed(item.path, reason)
        log.error(
            "%s %s: %s", "quarantined" if state == "quarantined" else "failed", item.path, reason
        )
        self._remember(MicrographSummary(item.path.name, state, error=reason))
        if state != "quarantined":  # try again once it is looked at next
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
