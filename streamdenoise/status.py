"""The daemon's published status: counters of what finished, made into an immutable
`Snapshot` that goes to the live view (a callback), to STATE/status.json (atomically, at
most every few seconds) and to systemd as `STATUS=`.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamdenoise import __version__
from streamdenoise.io import atomic_write_text
from streamdenoise.io.jsontext import json_text
from streamdenoise.sdnotify import Notifier
from streamdenoise.snapshot import MicrographSummary, Snapshot, summary_line
from streamdenoise.stats.readiness import MicrographStatistics, session_statistics

log = logging.getLogger("streamdenoise.daemon")
RECENT = 20
"""Micrographs listed in the snapshot, newest last."""
SESSION_WINDOW = 2000
"""Micrographs kept (as small statistics records) for the session's distributions."""
LATENCY_WINDOW = 1000
"""Latest latencies the median and 95th percentile are taken over."""
MAX_STATUS_INTERVAL = 2.0
"""status.json and `STATUS=` are refreshed at least this often (s) while there is news."""


def resident_memory_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass(frozen=True)
class Progress:
    """What the daemon's other parts know at one moment: the journal's counts by state,
    files found, pending (not yet complete) and queued (ready), the device and the state of
    session adaptation (None when off), the statistics' particle diameter (Å, source,
    estimate; None before the model is loaded or without statistics), and the seconds the
    model stage has been busy since the start."""

    counts: Mapping[str, int] = field(default_factory=dict)
    found: int = 0
    pending: int = 0
    queued: int = 0
    device: str = ""
    adaptation: str | None = None
    particle_diameter: dict | None = None
    model_busy_seconds: float = 0.0


class StatusBoard:
    """Counts finished micrographs and publishes snapshots (module docstring)."""

    def __init__(
        self,
        watch_dir: Path,
        out_dir: Path,
        status_file: Path,
        status_interval: float,
        notifier: Notifier,
        on_snapshot: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.watch_dir = watch_dir
        self.out_dir = out_dir
        self.status_file = status_file
        self.status_interval = min(status_interval, MAX_STATUS_INTERVAL)
        self.notifier = notifier
        self.on_snapshot = on_snapshot
        self.started = time.time()
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.finished_at: deque[float] = deque()  # the last hour's (pruned when read)
        self.recent: deque[MicrographSummary] = deque(maxlen=RECENT)
        self.statistics: deque[MicrographStatistics] = deque(maxlen=SESSION_WINDOW)
        self.queue_depths: deque[int] = deque(maxlen=SESSION_WINDOW)
        self.guard_fallbacks = 0
        self._last_written = 0.0

    def remember(self, summary: MicrographSummary) -> None:
        """List a micrograph (done, failed or quarantined) among the recent ones."""
        self.recent.append(summary)

    def count_done(
        self,
        summary: MicrographSummary,
        finished: float,
        micrograph_statistics: MicrographStatistics | None,
        queue_depth: int,
    ) -> None:
        """Count a written micrograph: its latency (in `summary`), when it finished (s since
        the epoch), its picking statistics with the queue depth then, and its guard."""
        if micrograph_statistics is not None:
            self.statistics.append(micrograph_statistics)
            self.queue_depths.append(queue_depth)
        if summary.latency is not None:
            self.latencies.append(summary.latency)
        self.finished_at.append(finished)
        if summary.guard == "fallback":
            self.guard_fallbacks += 1
        self.remember(summary)

    def snapshot(self, state: str, progress: Progress) -> Snapshot:
        """The snapshot of now: the counters and `progress`."""
        latencies = list(self.latencies)
        now = time.time()
        session = None
        warnings: tuple[str, ...] = ()
        if self.statistics:
            summary = session_statistics(
                list(self.statistics), queue_depths=list(self.queue_depths)
            )
            session, warnings = summary.to_dict(), summary.warnings
        finished = self.finished_at
        while finished and finished[0] <= now - 3600:
            finished.popleft()
        elapsed = min(3600.0, max(now - self.started, 1.0))
        counts = progress.counts
        return Snapshot(
            version=__version__,
            state=state,
            watch_dir=str(self.watch_dir),
            out_dir=str(self.out_dir),
            device=progress.device,
            started=self.started,
            updated=now,
            found=progress.found,
            done=counts.get("done", 0),
            failed=counts.get("failed", 0),
            quarantined=counts.get("quarantined", 0),
            pending=progress.pending,
            queued=progress.queued,
            rate_per_hour=len(finished) * 3600.0 / elapsed,
            latency_median=statistics.median(latencies) if latencies else None,
            latency_p95=float(np.percentile(latencies, 95)) if latencies else None,
            memory_mib=resident_memory_mib(),
            recent=tuple(self.recent),
            guard_fallbacks=self.guard_fallbacks,
            warnings=warnings,
            session=session,
            adaptation=progress.adaptation,
            particle_diameter=progress.particle_diameter,
            model_busy_seconds=progress.model_busy_seconds,
        )

    def publish(self, state: str, progress: Progress, *, force: bool = False) -> Snapshot:
        """Make the snapshot and hand it to `on_snapshot`; write status.json and send
        `STATUS=` when `force` or the status interval has passed. Returns the snapshot."""
        snapshot = self.snapshot(state, progress)
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot)
        now = time.monotonic()
        if force or now - self._last_written >= self.status_interval:
            self._last_written = now
            try:
                atomic_write_text(self.status_file, json_text(snapshot.to_json(), indent=1))
            except OSError as error:
                log.error("cannot write %s: %s", self.status_file, error)
            self.notifier.status(summary_line(snapshot))
        return snapshot
