"""The daemon's status board: counters → snapshots, status.json and systemd STATUS=."""

from __future__ import annotations

import json
from pathlib import Path

from streamdenoise.sdnotify import Notifier
from streamdenoise.snapshot import MicrographSummary, Snapshot
from streamdenoise.status import Progress, StatusBoard


class Recorder(Notifier):
    """A notifier that keeps the STATUS= lines instead of sending them."""

    def __init__(self) -> None:
        super().__init__(None)
        self.lines: list[str] = []

    def status(self, text: str) -> bool:
        self.lines.append(text)
        return True


def done(name: str, latency: float, guard: str = "passed") -> MicrographSummary:
    return MicrographSummary(name, "done", latency=latency, guard=guard)


def test_counts_and_figures_make_the_snapshot(tmp_path: Path) -> None:
    seen: list[Snapshot] = []
    board = StatusBoard(
        tmp_path / "in", tmp_path, tmp_path / "status.json", 10.0, Recorder(), seen.append
    )
    board.count_done(done("a.mrc", 2.0), board.started, None, 0)
    board.count_done(done("b.mrc", 4.0, "fallback"), board.started, None, 3)
    board.remember(MicrographSummary("c.mrc", "quarantined", error="truncated"))
    progress = Progress({"done": 2, "quarantined": 1}, found=3, pending=1, queued=4, device="cpu")
    snapshot = board.publish("watching", progress)
    assert seen == [snapshot]
    assert (snapshot.done, snapshot.quarantined, snapshot.failed) == (2, 1, 0)
    assert (snapshot.found, snapshot.pending, snapshot.queued) == (3, 1, 4)
    assert snapshot.latency_median == 3.0 and snapshot.guard_fallbacks == 1
    assert [s.name for s in snapshot.recent] == ["a.mrc", "b.mrc", "c.mrc"]
    assert snapshot.rate_per_hour > 0 and snapshot.session is None
    written = json.loads((tmp_path / "status.json").read_text())
    assert written["state"] == "watching" and written["done"] == 2


def test_status_json_is_rewritten_at_most_every_interval_unless_forced(tmp_path: Path) -> None:
    notifier = Recorder()
    board = StatusBoard(tmp_path, tmp_path, tmp_path / "status.json", 60.0, notifier)
    board.publish("watching", Progress())
    board.publish("watching", Progress(found=5))
    assert json.loads((tmp_path / "status.json").read_text())["found"] == 0
    assert len(notifier.lines) == 1
    board.publish("stopped", Progress(found=5), force=True)
    assert json.loads((tmp_path / "status.json").read_text())["found"] == 5
    assert len(notifier.lines) == 2
