"""`streamdenoise demo`: acquire a simulated session (2048² at 2 Å/px, one micrograph every
RATE s) in a thread while `watch` denoises it live, until every micrograph is done."""

from __future__ import annotations

import threading
from pathlib import Path

from rich.console import Console

from streamdenoise.acquisition import write_session
from streamdenoise.config import load_settings
from streamdenoise.daemon import Daemon, run_daemon
from streamdenoise.dashboard import read_status
from streamdenoise.errors import StreamDenoiseError
from streamdenoise.physics.density import builtin_reference_path, load_reference
from streamdenoise.physics.session import SessionSpec
from streamdenoise.snapshot import Snapshot


class Stopped(Exception):
    """The daemon stopped before the acquisition ended (e.g. Ctrl-C)."""


def demo_session(
    root: Path,
    count: int,
    rate: float,
    device: str | None,
    headless: bool | None,
    console: Console,
    keep: bool,
) -> int:
    """Run the demo in `root` (session/ and denoised/): the acquisition in a thread,
    stopped with the daemon, the daemon in this one; prints its figures (and where its
    files are, if `keep`) on `console` and returns the daemon's exit code. StreamDenoiseError if
    the acquisition failed."""
    session, outputs = root / "session", root / "denoised"
    (session / "micrographs").mkdir(parents=True, exist_ok=True)
    spec = SessionSpec(count=count, seed=1, detector="falcon4i", pixel_size=1.0, binning=2)
    console.print(
        f"Demo: acquiring {count} micrographs into {session / 'micrographs'}, one every {rate:g} s"
    )
    failures: list[BaseException] = []
    stopping, finished = threading.Event(), threading.Event()

    def wait(seconds: float) -> None:
        """The acquisition's pause between micrographs; ends it once the daemon stops."""
        if stopping.wait(seconds):
            raise Stopped

    def acquire() -> None:
        try:
            write_session(
                session, spec, load_reference(), rate=rate, write_mode="mixed", sleep=wait
            )
        except Stopped:
            pass
        except BaseException as error:  # reported after the daemon stops
            failures.append(error)

    writer = threading.Thread(target=acquire, name="acquisition", daemon=True)
    settings = load_settings(
        None,
        {
            "watch_dir": session / "micrographs",
            "out_dir": outputs,
            "device": device,
            "headless": headless,
            "settle_seconds": 1.0,
            "reference": builtin_reference_path(),  # the statistics' diameter, as simulated
            "status_interval": 5.0,
        },
    )

    def on_snapshot(snapshot: Snapshot) -> None:
        if (
            not writer.is_alive()
            and snapshot.done + snapshot.quarantined + snapshot.failed >= count
        ):
            finished.set()

    def stop_when_finished(daemon: Daemon) -> None:
        finished.wait()
        daemon.request_stop()

    def on_start(daemon: Daemon) -> None:
        threading.Thread(target=stop_when_finished, args=(daemon,), daemon=True).start()

    writer.start()
    try:
        code = run_daemon(settings, console, on_snapshot=on_snapshot, on_start=on_start)
    finally:
        stopping.set()
        writer.join()
    if failures:
        raise StreamDenoiseError(f"the simulated acquisition failed: {failures[0]}")
    final = read_status(outputs)
    console.print(
        f"\nDone: {final.done} of {count} micrographs denoised, median latency "
        f"{final.latency_median or 0:.1f} s."
    )
    if not keep:
        return code
    console.print(
        f"  raw micrographs:    {session / 'micrographs'}\n"
        f"  ground truth:       {session / 'ground_truth'}\n"
        f"  denoised MRC:       {outputs / 'denoised'}\n"
        f"  OME-Zarr:           {outputs / 'denoised.zarr'}\n"
        f"  RELION STAR:        {outputs / 'micrographs_denoised.star'}\n"
        f"  thumbnails:         {outputs / 'thumbnails'}\n"
        f"  status:             streamdenoise status {outputs}"
    )
    return code
