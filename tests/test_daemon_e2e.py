"""The live daemon end to end, with real processes, directories, files and signals.

The simulator writes a session at a rate (direct, chunked and write-then-rename writes)
while `streamdenoise watch` runs as its own process; bad files are dropped in beside.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import zarr
from readers import assert_valid_mrc, star_tables, strict_json

from streamdenoise.engine.batches import FAKE_COMPILE
from streamdenoise.io import read_star

EXECUTABLE = str(Path(sys.executable).with_name("streamdenoise"))
GOOD = 4


def start_daemon(
    watch: Path,
    out: Path,
    *extra: str,
    fake_compile: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """`streamdenoise watch` in its own process group (a signal to the group reaches its
    children, as Ctrl-C in a terminal does). fake_compile: compile with the FAKE_COMPILE
    test hook's seconds (default: no compilation, which would only slow these tests); env:
    more environment variables."""
    args = [EXECUTABLE, "watch", str(watch), "--out", str(out), "--device", "cpu", "--headless"]
    args.append("--compile" if fake_compile else "--no-compile")
    env = {**os.environ, **(env or {}), **({FAKE_COMPILE: fake_compile} if fake_compile else {})}
    args += [
        "--settle-seconds",
        "0.5",
        "--rescan-interval",
        "2",
        "--timeout-seconds",
        "4",
        "--status-interval",
        "1",
    ]
    with open(
        out.parent / f"daemon-{time.monotonic_ns()}.log", "w"
    ) as log:  # the child keeps a copy
        return subprocess.Popen(
            [*args, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )


def daemon_log(out: Path) -> str:
    return "".join(p.read_text() for p in sorted(out.parent.glob("daemon-*.log")))


def start_simulator(session: Path, count: int = GOOD, rate: float = 1.0) -> subprocess.Popen:
    args = [EXECUTABLE, "simulate", str(session), "-n", str(count), "--detector", "small"]
    args += ["--bin", "4", "--rate", str(rate), "--write-mode", "mixed", "--seed", "2"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def status(out: Path) -> dict:
    try:
        return json.loads((out / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for(condition, deadline: float = 120.0, what: str = "", out: Path | None = None) -> None:
    """Poll `condition` until it holds; on a timeout, the daemon's status and log tail (of
    the daemon writing to `out`) go into the failure message."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.25)
    context = "" if out is None else f"\nstatus: {status(out)}\nlog:\n{daemon_log(out)[-4000:]}"
    raise AssertionError(f"timed out waiting for {what}{context}")


def drop_bad_files(folder: Path) -> dict[str, str]:
    """Bad inputs and the words their quarantine reasons must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.mrc").write_text("not a micrograph at all, just words\n" * 50)
    (folder / "empty.mrc").write_bytes(b"")
    nan = np.full((64, 64), np.nan, np.float32)
    with mrcfile.new(folder / "nan.mrc", overwrite=True) as mrc:
        mrc.set_data(np.zeros((64, 64), np.float32))
        mrc.voxel_size = 4.0
    with open(folder / "nan.mrc", "r+b") as handle:
        handle.seek(1024)
        handle.write(nan.tobytes())
    with mrcfile.new(folder / "truncated.mrc", overwrite=True) as mrc:
        mrc.set_data(np.zeros((256, 256), np.float32))
        mrc.voxel_size = 4.0
    with open(folder / "truncated.mrc", "r+b") as handle:
        handle.truncate(20_000)
    return {
        "text.mrc": "not an MRC",
        "empty.mrc": "",
        "nan.mrc": "non-finite",
        "truncated.mrc": "20,000",
    }


def journal_rows(out: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(out / "journal.sqlite") as db:
        return db.execute("SELECT path, state, error FROM files ORDER BY path").fetchall()


class Processes:
    """The daemons and simulators one test starts; whatever still runs when it ends (a
    failed assertion) is killed with its whole process group and reaped."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen] = []

    def daemon(self, watch: Path, out: Path, *extra: str, **options) -> subprocess.Popen:
        """`start_daemon(watch, out, *extra, **options)`, killed at the end."""
        return self._keep(start_daemon(watch, out, *extra, **options))

    def simulator(self, session: Path, **options) -> subprocess.Popen:
        """`start_simulator(session, **options)`, killed at the end."""
        return self._keep(start_simulator(session, **options))

    def _keep(self, process: subprocess.Popen) -> subprocess.Popen:
        self._started.append(process)
        return process

    def kill_all(self) -> None:
        for process in self._started:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.kill()
                process.wait()


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.kill_all()


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, Path]]:
    """A bound systemd notification socket (listener, address ≤ 108 bytes), removed after."""
    address = Path("/tmp") / f"sdn-{os.getpid()}-{time.monotonic_ns()}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(address))
    yield listener, address
    listener.close()
    address.unlink(missing_ok=True)


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_live_session_every_micrograph_once_bad_files_quarantined(
    tmp_path: Path, polling: bool, processes: Processes
) -> None:
    session, out = tmp_path / "session", tmp_path / "out"
    watch = session / "micrographs"
    bad = drop_bad_files(watch)
    daemon = processes.daemon(watch, out, "--polling" if polling else "--no-polling")
    simulator = processes.simulator(session)
    assert simulator.wait(timeout=120) == 0
    wait_for(
        lambda: status(out).get("done") == GOOD and status(out).get("quarantined") == len(bad),
        what="all micrographs done and bad ones quarantined",
        out=out,
    )
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=60) == 0  # SIGTERM drains and exits cleanly
    final = strict_json(out / "status.json")
    assert final["state"] == "stopped"
    starting = "default; estimating from the first 5 micrographs"  # only 4 came
    assert final["particle_diameter"] == {"angstrom": 150.0, "source": starting, "estimate": None}
    # The model stage's busy time (benchmarks/daemon.py's utilisation): some, and less
    # than the daemon has run.
    assert 0 < final["model_busy_seconds"] < final["updated"] - final["started"]
    rows = journal_rows(out)
    states = {Path(p).name: (s, e) for p, s, e in rows}
    for name, words in bad.items():
        assert states[name][0] == "quarantined" and words in (states[name][1] or "")
    good = sorted(watch.glob("mic_*.mrc"))
    assert len(good) == GOOD
    star = read_star(out / "micrographs_denoised.star")["micrographs"]["_rlnMicrographName"]
    assert len(star) == len(set(star)) == GOOD
    for source in good:
        assert states[source.name][0] == "done"
        denoised = out / "denoised" / source.name
        with mrcfile.open(denoised, permissive=False) as mrc:
            assert mrc.data.shape == (256, 256) and float(mrc.voxel_size.x) == pytest.approx(4.0)
        assert_valid_mrc(denoised)
        assert str(denoised) in star
        sidecar = strict_json(out / "denoised" / f"{source.stem}.json")
        assert sidecar["pixel_size_angstrom"] == pytest.approx(4.0)
        assert sidecar["readiness"]["diameter_angstrom"] == 150.0
        assert sidecar["readiness"]["diameter_source"] == starting
        group = zarr.open_group(out / "denoised.zarr" / source.stem, mode="r")
        assert group["0"].shape == (256, 256)
        assert group.attrs["ome"]["multiscales"][0]["axes"][0]["unit"] == "angstrom"
        assert (out / "thumbnails" / f"{source.stem}.png").read_bytes()[:4] == b"\x89PNG"
    root = zarr.open_group(out / "denoised.zarr", mode="r")
    assert root.attrs["ome"]["bioformats2raw.layout"] == 3
    assert sorted(root["OME"].attrs["ome"]["series"]) == [p.stem for p in good]
    listed = star_tables(out / "coordinates.star")["coordinate_files"]
    assert sorted(listed["rlnMicrographName"]) == [str(p) for p in good]


def test_kill_dash_nine_then_restart_finishes_everything_exactly_once(
    tmp_path: Path, processes: Processes
) -> None:
    session, out = tmp_path / "session", tmp_path / "out"
    watch = session / "micrographs"
    watch.mkdir(parents=True)
    count = 6
    daemon = processes.daemon(watch, out)
    simulator = processes.simulator(session, count=count, rate=0.5)
    wait_for(lambda: status(out).get("done", 0) >= 2, what="two micrographs done", out=out)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=30)
    assert simulator.wait(timeout=120) == 0
    # The lock died with the process; a new daemon takes over and resumes. The killed one's
    # status.json may already say all done (a fast first daemon): wait for the new one's.
    (out / "status.json").unlink()
    daemon = processes.daemon(watch, out)
    wait_for(
        lambda: status(out).get("done") == count and status(out).get("state") == "watching",
        what="all micrographs done after the restart",
        out=out,
    )
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=60) == 0
    rows = journal_rows(out)
    assert len(rows) == count and all(state == "done" for _, state, _ in rows)
    star = read_star(out / "micrographs_denoised.star")["micrographs"]["_rlnMicrographName"]
    assert sorted(star) == sorted(set(star)) and len(star) == count
    assert not list((out / "denoised").glob(".*"))  # no temporaries left behind
    assert not list((out / "denoised.zarr").glob(".*"))


def test_a_second_daemon_on_the_same_output_is_refused(
    tmp_path: Path, processes: Processes
) -> None:
    watch, out = tmp_path / "in", tmp_path / "out"
    watch.mkdir()
    first = processes.daemon(watch, out)
    wait_for(lambda: status(out).get("state") == "watching", what="the first daemon", out=out)
    second = subprocess.run(
        [EXECUTABLE, "watch", str(watch), "--out", str(out), "--device", "cpu", "--headless"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 2
    assert "already writing" in second.stderr and str(first.pid) in second.stderr
    (watch / "STOP").touch()  # the stop file ends a session cleanly
    assert first.wait(timeout=60) == 0
    assert not (watch / "STOP").exists()
    assert os.path.exists(out / "status.json")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_output_disk_is_recorded_and_the_daemon_keeps_going(
    tmp_path: Path, processes: Processes
) -> None:
    session, out, state = tmp_path / "session", tmp_path / "out", tmp_path / "state"
    watch = session / "micrographs"
    out.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(out)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (out / "ballast").write_bytes(b"\0" * (4 * 2**20 - 100_000))  # ~100 kB left: < 1 output
        simulator = processes.simulator(session, count=2, rate=0.5)
        assert simulator.wait(timeout=120) == 0
        daemon = processes.daemon(watch, out, "--state-dir", str(state))
        wait_for(lambda: status(state).get("quarantined") == 2, what="both quarantined")
        rows = journal_rows(state)
        assert all("No space left" in (error or "") for _, _, error in rows)
        assert daemon.poll() is None  # still running
        (out / "ballast").unlink()  # the operator frees space and retries
        retried = subprocess.run(
            [EXECUTABLE, "quarantine", str(state), "--retry"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert retried.returncode == 0 and "2 file(s)" in retried.stderr
        wait_for(lambda: status(state).get("done") == 2, what="done after the retry")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        processes.kill_all()  # before the unmount
        subprocess.run(["umount", "-l", str(out)], check=False)


def test_session_adaptation_runs_beside_the_live_daemon(
    tmp_path: Path, processes: Processes
) -> None:
    """--adapt-after: after the first micrographs the daemon adapts a copy of the model in
    the background, keeps denoising, reports the outcome in status.json and, only where
    the held-out criterion improved, saves the adapted model."""
    session, out = tmp_path / "session", tmp_path / "out"
    watch = session / "micrographs"
    watch.mkdir(parents=True)
    count = 6
    daemon = processes.daemon(watch, out, "--adapt-after", "4", "--adapt-steps", "3")
    simulator = processes.simulator(session, count=count, rate=2.0)
    assert simulator.wait(timeout=120) == 0
    wait_for(lambda: status(out).get("done") == count, what="every micrograph", out=out)
    wait_for(
        lambda: (status(out).get("adaptation") or "").startswith(
            ("adapted", "kept", "adaptation failed")
        ),
        deadline=300.0,
        what="the adaptation decided",
        out=out,
    )
    decided = status(out)["adaptation"]
    assert not decided.startswith("adaptation failed"), f"{decided}\n{daemon_log(out)}"
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=60) == 0
    outcome = status(out)["adaptation"]
    assert "criterion ρ" in outcome and "no denoising" in outcome
    assert (out / "adapted_model.pt").exists() == outcome.startswith("adapted")
    assert all(state == "done" for _, state, _ in journal_rows(out))


def write_micrographs(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for index in range(count):
        with mrcfile.new(folder / f"mic_{index}.mrc") as mrc:
            mrc.set_data(rng.poisson(20.0, (256, 256)).astype(np.float32))
            mrc.voxel_size = 4.0


def compilers(pid: int) -> list[int]:
    """The fake compiler processes (`sleep`) of the process `pid`, from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    found = []
    for child in children:
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == "sleep":
                found.append(child)
        except OSError:
            continue
    return found


def compiling_for_micrographs(daemon: subprocess.Popen, out: Path) -> bool:
    return bool(compilers(daemon.pid)) and ("processing", 0, None) in journal_attempts(out)


def journal_attempts(out: Path) -> list[tuple[str, int, str | None]]:
    with sqlite3.connect(out / "journal.sqlite") as db:
        return db.execute("SELECT state, attempts, error FROM files ORDER BY path").fetchall()


def stop_group(daemon: subprocess.Popen, signum: int) -> int:
    """Signal the daemon's process group (Ctrl-C, or systemd's stop of every process) and
    return its exit code."""
    os.killpg(daemon.pid, signum)
    return daemon.wait(timeout=60)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "stop"])
def test_a_stop_during_warm_up_is_a_clean_exit(
    tmp_path: Path, signum: int, processes: Processes
) -> None:
    watch, out = tmp_path / "in", tmp_path / "out"
    write_micrographs(watch, 1)
    daemon = processes.daemon(watch, out, fake_compile="600")
    wait_for(lambda: compilers(daemon.pid), what="the warm-up's compilation", out=out)
    assert stop_group(daemon, signum) == 0
    log = daemon_log(out)
    assert "stopped during warm-up" in log and "Traceback" not in log
    assert "eagerly" not in log  # no fallback to the eager model on the way out
    assert all(state == "seen" and attempts == 0 for state, attempts, _ in journal_attempts(out))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "stop"])
def test_a_stop_while_compiling_for_micrographs_fails_none_of_them(
    tmp_path: Path, signum: int, processes: Processes
) -> None:
    watch, out = tmp_path / "in", tmp_path / "out"
    write_micrographs(watch, 2)
    for _ in range(2):  # more stops than one; each would have used a try
        daemon = processes.daemon(watch, out, fake_compile="0,600")  # the warm-up compiles
        wait_for(
            partial(compiling_for_micrographs, daemon, out),
            what="a compilation for the first micrographs",
            out=out,
        )
        assert stop_group(daemon, signum) == 0
    rows = journal_attempts(out)
    assert rows and all(row == ("seen", 0, None) for row in rows)  # pending, no try used
    log = daemon_log(out)
    assert "stay pending" in log and "Traceback" not in log
    assert "more characters)" not in log and len(log) < 20_000  # no compiler output
    daemon = processes.daemon(watch, out)  # the next start does them
    wait_for(lambda: status(out).get("done") == 2, what="both done after the restart", out=out)
    assert stop_group(daemon, signal.SIGTERM) == 0


def test_a_failed_compilation_is_logged_once_and_kept_short_in_the_journal(
    tmp_path: Path, processes: Processes
) -> None:
    watch, out = tmp_path / "in", tmp_path / "out"
    write_micrographs(watch, 1)  # alone in its batch, the micrograph is charged the failure
    daemon = processes.daemon(watch, out, fake_compile="0,600")
    wait_for(lambda: compilers(daemon.pid) and journal_attempts(out), what="a compilation")
    wait_for(lambda: len(compilers(daemon.pid)) == 1, what="one compiler")
    os.kill(compilers(daemon.pid)[0], signal.SIGKILL)  # the compiler dies; no stop
    wait_for(
        lambda: any(attempts == 1 for _, attempts, _ in journal_attempts(out)),
        what="the failure recorded",
        out=out,
    )
    assert stop_group(daemon, signal.SIGTERM) == 0  # (stops the retry's compilation)
    rows = journal_attempts(out)
    failed = [error for _, attempts, error in rows if attempts == 1]
    assert failed and all(e.startswith("denoising failed: C++ compile error") for e in failed)
    assert all(len(error or "") <= 300 for _, _, error in rows)
    assert all(attempts <= 1 for _, attempts, _ in rows)  # the stop took no second try
    log = daemon_log(out)
    assert log.count("more characters)") == 1  # the compiler's output, once, cut
    assert len(log) < 20_000 and "Traceback" not in log


def test_stopping_is_sent_at_the_stop_request_not_after_the_drain(
    tmp_path: Path, processes: Processes, notify_socket: tuple[socket.socket, Path]
) -> None:
    watch, out = tmp_path / "in", tmp_path / "out"
    write_micrographs(watch, 1)
    listener, address = notify_socket
    listener.settimeout(10.0)
    env = {"NOTIFY_SOCKET": str(address)}
    daemon = processes.daemon(watch, out, fake_compile="0,60", env=env)
    wait_for(partial(compiling_for_micrographs, daemon, out), what="a slow compilation")
    os.kill(daemon.pid, signal.SIGTERM)  # the daemon only: its compiler runs on
    asked = time.monotonic()
    while "STOPPING=1" not in listener.recv(4096).decode():
        pass
    assert time.monotonic() - asked < 5.0 and daemon.poll() is None  # still draining
    assert stop_group(daemon, signal.SIGTERM) == 0  # ends the compiler, then the drain
    assert all(row == ("seen", 0, None) for row in journal_attempts(out))


def received(listener: socket.socket, seconds: float) -> list[str]:
    """The messages `listener` receives within `seconds`."""
    end, messages = time.monotonic() + seconds, []
    while (left := end - time.monotonic()) > 0:
        listener.settimeout(left)
        try:
            messages.append(listener.recv(4096).decode())
        except TimeoutError:
            break
    return messages


def test_the_watchdog_is_fed_while_a_long_compilation_runs(
    tmp_path: Path, processes: Processes, notify_socket: tuple[socket.socket, Path]
) -> None:
    watch, out = tmp_path / "in", tmp_path / "out"
    write_micrographs(watch, 1)
    listener, address = notify_socket
    env = {"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "1000000"}  # ping every 0.5 s
    daemon = processes.daemon(watch, out, fake_compile="0,60", env=env)
    wait_for(partial(compiling_for_micrographs, daemon, out), what="a slow compilation")
    listener.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:  # what the loop sent before the compilation began
            listener.recv(4096)
    pings = received(listener, 3.0).count("WATCHDOG=1")
    assert pings >= 3 and compilers(daemon.pid)  # fed, while the compiler still runs
    assert stop_group(daemon, signal.SIGTERM) == 0
