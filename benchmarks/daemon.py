"""Benchmark the live daemon end to end on 4096² micrographs binned to ~4 Å/px.

    python benchmarks/daemon.py [--micrographs 200] [--rate 8] [--device cpu]

A pool of distinct simulated 4096² Falcon-4i micrographs (0.93 Å/px, 64 MiB each) is made
once and cached; a feeder copies them under new names into a watched directory (each a new
file, written like an acquisition: hidden temporary, then rename) while `streamdenoise
watch` runs as its own process with the default model, and deletes inputs once they are
done (disk stays bounded). Two phases:

1. sustained throughput: the feeder keeps two micrographs waiting that the daemon has not
   started (not yet `processing` or `done` in its journal), so the model stage never
   idles for want of input, as when it catches up on a backlog; micrographs per hour =
   completions over the phase's wall time. (Until 2026-12-02 it kept two not yet done,
   which counted the ones in flight: the model stage then waited a third of the phase
   for the next file to be fed, settle and be read, py-spy showed);
2. latency: one micrograph every --rate seconds (slower than capacity, like a
   microscope); latency = outputs written − input file complete (its mtime), from the
   journal; median and p95.

Model-stage utilisation: the share of the throughput phase's wall time that the daemon's
model stage spent running batches (its own clock, `model_busy_seconds` in status.json, read
at the phase's start and end). On a GPU it says whether the host keeps the network fed
(issue 13's target: ≥ 80 %; below it, reading, binning or the writers are the bottleneck:
`benchmarks/daemon_profile.py --device cuda` says which); on a small CPU the network shares
the cores with that host work, so the share is lower and means less.

Peak memory: the daemon's VmHWM (peak RSS) from /proc, and its RSS sampled over the run.
Writes the "Daemon" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results import cached_micrographs, markdown_table, write_section

from streamdenoise.physics.session import SessionSpec

EXECUTABLE = str(Path(sys.executable).with_name("streamdenoise"))


def micrograph_pool(count: int) -> list[Path]:
    """`count` distinct 4096² simulated micrographs, cached under the cache directory."""
    spec = SessionSpec(count=count, seed=77, detector="falcon4i")
    return cached_micrographs("daemon-benchmark-pool", spec, "pool_", 2)


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process in MiB."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return values


def journal(out: Path) -> list[tuple[str, str, float | None, float]]:
    with sqlite3.connect(out / "journal.sqlite") as db:
        return db.execute("SELECT path, state, latency, updated FROM files").fetchall()


def model_busy(out: Path) -> tuple[float, float]:
    """(seconds the daemon's model stage has been busy, when it said so) from status.json,
    which the daemon rewrites every second here."""
    status = json.loads((out / "status.json").read_text())
    return float(status["model_busy_seconds"]), float(status["updated"])


def feed(pool: list[Path], watch: Path, index: int) -> Path:
    """Copy a pool micrograph into the watched directory as new file number `index`."""
    target = watch / f"FoilHole_{index:05d}_fractions.mrc"
    temporary = watch / f".{target.name}.part"
    shutil.copyfile(pool[index % len(pool)], temporary)
    os.replace(temporary, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micrographs", type=int, default=200, help="Throughput phase.")
    parser.add_argument("--latency-micrographs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=8.0, help="Latency phase, s between.")
    parser.add_argument("--pool", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    pool = micrograph_pool(args.pool)
    root = Path(tempfile.mkdtemp(prefix="streamdenoise-bench-"))
    watch, out = root / "in", root / "out"
    watch.mkdir()
    command = [
        EXECUTABLE,
        "watch",
        str(watch),
        "--out",
        str(out),
        "--device",
        args.device,
        "--headless",
        "--settle-seconds",
        "1",
        "--status-interval",
        "1",
        "--float16",
    ]
    log = open(root / "daemon.log", "w")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    rss: list[float] = []

    def count(*states: str) -> int:
        """Micrographs in the journal in one of `states`."""
        try:
            return sum(1 for _, state, _, _ in journal(out) if state in states)
        except sqlite3.Error:
            return 0

    def done_count() -> int:
        return count("done")

    def tick() -> None:
        """Sample the daemon's memory, drop finished inputs (bounded disk), wait 0.5 s."""
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon stopped; see {root / 'daemon.log'}")
        status = proc_status(daemon.pid)
        if "VmRSS" in status:
            rss.append(status["VmRSS"])
        finished = finished_names()
        for path in list(watch.glob("*.mrc")):
            if path.name in finished:
                path.unlink(missing_ok=True)
        time.sleep(0.5)

    def wait_until(condition, timeout: float = 7200) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise RuntimeError(f"timed out; see {root / 'daemon.log'}")
            tick()

    def finished_names() -> set[str]:
        try:
            return {Path(p).name for p, state, _, _ in journal(out) if state == "done"}
        except sqlite3.Error:
            return set()

    try:
        wait_until(lambda: (out / "status.json").exists())
        # Phase 1: sustained throughput with two micrographs always waiting, not started.
        fed = 0
        phase_start = None
        while fed < args.micrographs:
            waiting = fed - count("processing", "done", "failed", "quarantined")
            if waiting < 2:
                feed(pool, watch, fed)
                fed += 1
                if phase_start is None:
                    phase_start = time.monotonic()
                    busy_start = model_busy(out)
            tick()
        first_done = done_count()
        wait_until(lambda: done_count() >= args.micrographs)
        throughput_seconds = time.monotonic() - phase_start
        busy_end = model_busy(out)
        utilisation = (busy_end[0] - busy_start[0]) / max(busy_end[1] - busy_start[1], 1e-9)
        per_hour = args.micrographs * 3600 / throughput_seconds
        print(
            f"throughput: {args.micrographs} in {throughput_seconds:.0f} s = {per_hour:.0f}/h "
            f"(first done after feeding {first_done})",
            flush=True,
        )
        # Phase 2: latency at an acquisition-like rate.
        latency_start = time.time()
        for i in range(args.latency_micrographs):
            feed(pool, watch, args.micrographs + i)
            next_at = time.monotonic() + args.rate
            while time.monotonic() < next_at:
                tick()
        wait_until(lambda: done_count() >= args.micrographs + args.latency_micrographs)
        latencies = [
            lat
            for _, state, lat, updated in journal(out)
            if state == "done" and lat is not None and updated >= latency_start
        ]
        peak = proc_status(daemon.pid).get("VmHWM", float("nan"))
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=300)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        log.close()
    status = json.loads((out / "status.json").read_text())
    quarter = max(1, len(rss) // 4)
    rows = [
        [
            "sustained throughput",
            f"{per_hour:.0f} micrographs/h ({throughput_seconds / args.micrographs:.2f} s each)",
        ],
        [
            "model-stage utilisation, throughput phase",
            f"{100 * utilisation:.0f} % of the wall time (on a GPU the target is ≥ 80 %)",
        ],
        [
            "latency, one every " + f"{args.rate:g} s",
            f"median {np.median(latencies):.2f} s, p95 {np.percentile(latencies, 95):.2f} s "
            f"(n={len(latencies)})",
        ],
        ["peak memory (VmHWM)", f"{peak:.0f} MiB"],
        [
            "RSS first / last quarter of the run",
            f"{np.mean(rss[:quarter]):.0f} / {np.mean(rss[-quarter:]):.0f} MiB "
            f"(max {max(rss):.0f})",
        ],
        [
            "micrographs processed",
            f"{status['done']} ({status['failed']} failed, {status['quarantined']} quarantined)",
        ],
    ]
    body = (
        f"Input: 4096² float32 MRC at 0.93 Å/px (64 MiB, simulated, {args.pool} distinct "
        "micrographs cycled under new names), written with temporary + rename; the daemon "
        "(default model, live mode, device " + args.device + ") bins to ~4 Å/px (952²) and "
        "writes float16 MRC, OME-Zarr, thumbnail, sidecar and the STAR file.\n\n"
        + markdown_table(["figure", "value"], rows)
    )
    print(body)
    write_section("Daemon", body, "python benchmarks/daemon.py " + " ".join(sys.argv[1:]))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
