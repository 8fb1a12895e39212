"""The daemon's published state: immutable snapshots and their one-line summary.

Shared by the daemon (which makes them), the dashboard and `streamdenoise status` (which
render them); imports nothing heavy, so attaching to a daemon is instant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MicrographSummary:
    """One finished (or failed) micrograph, for the dashboard."""

    name: str
    state: str
    latency: float | None = None
    noise_sigma: float | None = None
    pixel_size: float | None = None
    seconds: float | None = None
    error: str | None = None
    verdict: str | None = None
    candidates: int | None = None
    cnr: float | None = None
    guard: str | None = None
    """The do-no-harm guard: "passed", "fallback" (the binned input was kept) or None."""
    candidates_sigma: float | None = None
    """The count's one-σ statistical uncertainty (`MicrographStatistics.candidates_sigma`)."""


@dataclass(frozen=True)
class Snapshot:
    """Immutable state of the daemon, published after every step (status.json, dashboard).

    Times in seconds; rate in micrographs per hour; memory in MiB.
    """

    version: str
    state: str
    watch_dir: str
    out_dir: str
    device: str
    started: float
    updated: float
    found: int = 0
    done: int = 0
    failed: int = 0
    quarantined: int = 0
    pending: int = 0
    queued: int = 0
    rate_per_hour: float = 0.0
    latency_median: float | None = None
    latency_p95: float | None = None
    memory_mib: float = 0.0
    recent: tuple[MicrographSummary, ...] = ()
    guard_fallbacks: int = 0
    warnings: tuple[str, ...] = ()
    session: dict | None = None
    adaptation: str | None = None
    """State of `--adapt-after` session adaptation (None when off)."""
    particle_diameter: dict | None = None
    """The statistics' particle diameter: {"angstrom", "source" ("given", "reference NAME",
    "estimated from N micrographs", "default…"), "estimate" (`DiameterEstimate.to_dict`
    or None)}; None without statistics."""
    model_busy_seconds: float = 0.0
    """Seconds the model stage has run batches since the start: its increase over a stretch
    of wall time (`updated`) is the model stage's utilisation (benchmarks/daemon.py)."""

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(data: dict) -> Snapshot:
        data = dict(data)
        data["recent"] = tuple(MicrographSummary(**r) for r in data.get("recent", ()))
        data["warnings"] = tuple(data.get("warnings", ()))
        return Snapshot(**data)


def summary_line(snapshot: Snapshot) -> str:
    """One line with the live figures (headless log, systemd STATUS=)."""
    latency = (
        f"latency {snapshot.latency_median:.1f} s (p95 {snapshot.latency_p95:.1f} s)"
        if snapshot.latency_median is not None
        else "latency -"
    )
    readiness = ""
    if snapshot.session:
        cnr = (snapshot.session.get("cnr") or {}).get("median")
        picks = (snapshot.session.get("candidates") or {}).get("median")
        readiness = (
            f"; ready {100 * (snapshot.session.get('ready_share') or 0):.0f}%, "
            f"picks {picks or 0:.0f}/micrograph, CNR {cnr or 0:.1f}"
        )
    warnings = "".join(f"; WARNING {w}" for w in snapshot.warnings)
    if snapshot.guard_fallbacks:
        warnings = f"; guard kept the input for {snapshot.guard_fallbacks}" + warnings
    if snapshot.adaptation:
        warnings = f"; adaptation: {snapshot.adaptation}" + warnings
    return (
        f"{snapshot.state}: {snapshot.done} done, {snapshot.queued + snapshot.pending} waiting, "
        f"{snapshot.failed} failed, {snapshot.quarantined} quarantined; "
        f"{snapshot.rate_per_hour:.0f}/h; {latency}; {snapshot.memory_mib:.0f} MiB"
        f"{readiness}{warnings}"
    )
