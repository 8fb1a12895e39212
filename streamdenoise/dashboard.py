"""Rendering daemon snapshots: the rich live view and the headless reporter.

Imports none of the workers: it only reads `Snapshot`s (in-process or from status.json).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streamdenoise.lock import LOCK_NAME, holder_alive
from streamdenoise.snapshot import Snapshot, summary_line

STATE_STYLES = {"done": "green", "failed": "yellow", "quarantined": "red"}
VERDICT_STYLES = {"ready": "bold green", "marginal": "yellow", "not ready": "bold red"}
SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """Unicode sparkline of a series (NaN shown as a space)."""
    finite = [v for v in values if v == v]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    scale = (len(SPARK) - 1) / (high - low) if high > low else 0.0
    return "".join(" " if v != v else SPARK[int((v - low) * scale)] for v in values)


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
    columns = ("micrograph", "state", "verdict", "picks", "CNR", "latency", "noise σ", "note")
    for column in columns:
        recent.add_column(column)
    for item in reversed(snapshot.recent):
        recent.add_row(
            item.name,
            Text(item.state, style=STATE_STYLES.get(item.state, "")),
            Text(item.verdict or "-", style=VERDICT_STYLES.get(item.verdict or "", "")),
            _count(item.candidates, item.candidates_sigma),
            "-" if item.cnr is None or item.cnr != item.cnr else f"{item.cnr:.1f}",
            _seconds(item.latency),
            "-" if item.noise_sigma is None else f"{item.noise_sigma:.3f}",
            (item.error or ("guard: input kept" if item.guard == "fallback" else ""))[:60],
        )
    parts = [header, figures]
    if snapshot.session:
        parts.append(session_line(snapshot))
    if snapshot.particle_diameter:
        parts.append(diameter_line(snapshot.particle_diameter))
    parts.append(recent)
    if snapshot.guard_fallbacks:
        parts.append(
            Text(
                f"⚠ do-no-harm guard: the input was kept for {snapshot.guard_fallbacks} "
                "micrograph(s) (the model's residual was not noise; see their sidecars)",
                style="yellow",
            )
        )
    if snapshot.adaptation:
        parts.append(Text(f"session adaptation: {snapshot.adaptation}", style="cyan"))
    parts += [Text(f"⚠ {warning}", style="yellow") for warning in snapshot.warnings]
    return Panel(Group(*parts), title=f"streamdenoise {snapshot.version}", border_style="blue")


def _count(candidates: int | None, sigma: float | None) -> str:
    """A micrograph's picks with their one-σ uncertainty, "-" when not counted."""
    if candidates is None:
        return "-"
    return str(candidates) if sigma is None or sigma != sigma else f"{candidates} ± {sigma:.0f}"


def diameter_line(diameter: dict) -> Text:
    """The statistics' particle diameter, its source and the estimate's spread (the
    snapshot's `particle_diameter`)."""
    estimate = diameter.get("estimate") or {}
    spread = ""
    if diameter["source"].startswith("estimated") and estimate:
        spread = f" ± {estimate['uncertainty_angstrom']:.0f}"
    line = Text("particle diameter ")
    line.append(f"{diameter['angstrom']:.0f}{spread} Å", style="bold")
    hint = "" if diameter["source"] == "given" else "; override with --particle-diameter"
    line.append(f" ({diameter['source']}{hint})")
    return line


def session_line(snapshot: Snapshot) -> Text:
    """Shares of verdicts, distributions and trend sparklines of the recent micrographs."""
    session = snapshot.session or {}
    candidates = session.get("candidates") or {}
    cnr = session.get("cnr") or {}
    recent = [r for r in snapshot.recent if r.state == "done"]
    line = Text()
    line.append(f"ready {100 * (session.get('ready_share') or 0):.0f}%", style="green")
    line.append(f" · marginal {100 * (session.get('marginal_share') or 0):.0f}%", style="yellow")
    line.append(f" · not ready {100 * (session.get('not_ready_share') or 0):.0f}%", style="red")
    line.append(
        f"   picks/micrograph {candidates.get('median') or 0:.0f} "
        f"(p10 {candidates.get('p10') or 0:.0f}, p90 {candidates.get('p90') or 0:.0f}) "
        f"{sparkline([float(r.candidates or 0) for r in recent])}"
    )
    line.append(
        f"   CNR {cnr.get('median') or 0:.1f} "
        f"{sparkline([float('nan') if r.cnr is None else r.cnr for r in recent])}"
    )
    return line


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


STOPPED_UNCLEANLY = "stopped (not cleanly)"


def daemon_alive(state_dir: Path) -> bool:
    """Whether the daemon whose pid is in the state directory's lock still runs."""
    return holder_alive(Path(state_dir) / LOCK_NAME)


def read_status(out_dir: Path) -> Snapshot:
    """The last snapshot a daemon wrote to OUT/status.json; its state reads "stopped (not
    cleanly)" when it did not stop and its process is gone."""
    path = Path(out_dir) / "status.json"
    snapshot = Snapshot.from_json(json.loads(path.read_text()))
    if not snapshot.state.startswith("stopped") and not daemon_alive(Path(out_dir)):
        snapshot = replace(snapshot, state=STOPPED_UNCLEANLY)
    return snapshot


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
            if snapshot.state.startswith("stopped"):
                return
        time.sleep(interval)
