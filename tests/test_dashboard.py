"""The dashboard renders snapshots (in-process or from status.json) without the workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from streamdenoise.dashboard import follow_status, read_status, render, sparkline
from streamdenoise.snapshot import MicrographSummary, Snapshot, summary_line


def snapshot() -> Snapshot:
    return Snapshot(
        version="0",
        state="watching",
        watch_dir="/in",
        out_dir="/out",
        device="cpu",
        started=0.0,
        updated=3600.0,
        done=10,
        quarantined=1,
        rate_per_hour=600.0,
        latency_median=4.2,
        latency_p95=6.0,
        recent=(
            MicrographSummary(
                "mic_0001.mrc",
                "done",
                4.0,
                0.15,
                4.0,
                2.0,
                None,
                "ready",
                120,
                4.5,
                candidates_sigma=11.4,
            ),
            MicrographSummary("bad.mrc", "quarantined", error="truncated: 8 of 1,024 bytes"),
        ),
        warnings=("falling contrast: median CNR 5.0 → 3.0 over the last 20 micrographs",),
        session={
            "ready_share": 0.8,
            "marginal_share": 0.1,
            "not_ready_share": 0.1,
            "candidates": {"median": 120, "p10": 80, "p90": 150},
            "cnr": {"median": 4.5, "p10": 3.0, "p90": 5.0},
        },
        particle_diameter={
            "angstrom": 124.0,
            "source": "estimated from 5 micrographs",
            "estimate": {
                "diameter_angstrom": 124.0,
                "uncertainty_angstrom": 6.2,
                "blob_angstrom": 101.0,
                "peaks": 230,
                "micrographs": 5,
                "confident": True,
            },
        },
    )


def test_render_shows_the_figures_verdicts_and_warnings() -> None:
    console = Console(record=True, width=160)
    console.print(render(snapshot()))
    text = console.export_text()
    for expected in (
        "10 done",
        "600 / h",
        "mic_0001.mrc",
        "120 ± 11",  # the count with its uncertainty
        "ready",
        "truncated",
        "ready 80%",
        "falling contrast",
        "picks/micrograph 120",
        "particle diameter 124 ± 6 Å (estimated from 5 micrographs; override with "
        "--particle-diameter)",
    ):
        assert expected in text
    given = Snapshot(
        **{**snapshot().__dict__, "particle_diameter": {"angstrom": 150.0, "source": "given"}}
    )
    console.print(render(given))
    assert "particle diameter 150 Å (given)" in console.export_text()


def test_summary_line_and_sparkline() -> None:
    line = summary_line(snapshot())
    assert "10 done" in line and "ready 80%" in line and "WARNING falling contrast" in line
    assert sparkline([1.0, 2.0, 3.0]) == "▁▄█" and sparkline([]) == ""


def test_status_round_trip_and_no_torch_import(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_text(json.dumps(snapshot().to_json()))
    (tmp_path / ".lock").write_text(f"{os.getpid()}\n")  # a live daemon holds the lock
    assert read_status(tmp_path) == snapshot()
    code = "import sys, streamdenoise.dashboard; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"  # attaching to a daemon is instant


def test_guard_fallbacks_are_shown_everywhere() -> None:
    kept = MicrographSummary("mic_0002.mrc", "done", 4.0, 0.2, 4.0, 2.0, guard="fallback")
    base = snapshot()
    guarded = Snapshot(**{**base.__dict__, "recent": (kept,), "guard_fallbacks": 3})
    console = Console(record=True, width=160)
    console.print(render(guarded))
    text = console.export_text()
    assert "guard: input kept" in text and "input was kept for 3" in text
    assert "guard kept the input for 3" in summary_line(guarded)
    assert "guard" not in summary_line(base)
    assert Snapshot.from_json(json.loads(json.dumps(guarded.to_json()))) == guarded


def test_status_of_a_killed_daemon_says_so_and_follow_ends(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_text(json.dumps(snapshot().to_json()))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / ".lock").write_text(gone.stdout)  # its pid: that process has exited
    assert read_status(tmp_path).state == "stopped (not cleanly)"
    followed = list(follow_status(tmp_path, interval=0.01))
    assert [s.state for s in followed] == ["stopped (not cleanly)"]
