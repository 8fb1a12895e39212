"""Rendering daemon snapshots: the rich live view and the headless reporter.

Imports none of the workers: it only reads `Snapshot`s (in-process or from status.json).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streamdenoise.snapshot import Snapshot, summary_line

STATE_STYLES = {"done": "green", "failed": "yellow", "quarantined": "red"}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def render(snapshot: Snapshot) -> Panel:
    """A rich panel: session header, throughput and queue, the last micrographs."""
    uptime = dt.timedelta(seconds=int(snapshot.updated - snapshot.started))
    header = Table.grid(padding=(0, 2))
    header.add_row(
        Text(f"{snapshot.state}", style="bold cyan"),
        f"watching {snapshot.watch_dir}",
        f"→ {snapshot.out_dir}",
        f"device {snapshot.device}",
        f"up {uptime}",
    )
    figures = Table.grid(padding=(0, 3))
    figures.add_row(
        f"[bold]{snapshot.done}[/] done",
        f"[bold]{snapshot.queued}[/] queued · {snapshot.pending} settling",
        f"[yellow]{snapshot.failed}[/] failed · [red]{snapshot.quarantined}[/] quarantined",
        f"{snapshot.rate_per_hour:.0f} / h",
        f"latency {_seconds(snapshot.latency_median)} (p95 {_seconds(snapshot.latency_p95)})",
        f"{snapshot.memory_mib:.0f} MiB",
    )
    recent = Table(expand=True, show_edge=False, header_style="bold")
    for column in ("micrograph", "state", "latency", "noise σ", "Å/px", "compute", "note"):
        recent.add_column(column)
    for item in reversed(snapshot.recent):
        recent.add_row(
            item.name,
            Text(item.state, style=STATE_STYLES.get(item.state, "")),
            _seconds(item.latency),
            "-" if item.noise_sigma is None else f"{item.noise_sigma:.3f}",
            "-" if item.pixel_size is None else f"{item.pixel_size:.2f}",
            _seconds(item.seconds),
            (item.error or "")[:60],
        )
    parts = [header, figures, recent]
    parts += [Text(f"⚠ {warning}", style="yellow") for warning in snapshot.warnings]
    return Panel(Group(*parts), title=f"streamdenoise {snapshot.version}", border_style="blue")


class HeadlessReporter:
    """Logs `summary_line` at most every `interval` seconds (for systemd's journal)."""

    def __init__(self, interval: float, logger: logging.Logger | None = None) -> None:
        self.interval = interval
        self.logger = logger or logging.getLogger("streamdenoise.status")
        self._last = 0.0

    def __call__(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval or snapshot.state == "stopped":
            self._last = now
            self.logger.info(summary_line(snapshot))


def read_status(out_dir: Path) -> Snapshot:
    """The last snapshot a daemon wrote to OUT/status.json."""
    path = Path(out_dir) / "status.json"
    return Snapshot.from_json(json.loads(path.read_text()))


def follow_status(out_dir: Path, interval: float = 1.0) -> Iterator[Snapshot]:
    """Snapshots from OUT/status.json as they change (until the daemon stops)."""
    last = None
    while True:
        try:
            snapshot = read_status(out_dir)
        except (OSError, ValueError):
            snapshot = None
        if snapshot is not None and snapshot.updated != last:
            last = snapshot.updated
            yield snapshot
            if snapshot.state == "stopped":
                return
        time.sleep(interval)
