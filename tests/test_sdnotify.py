"""sd_notify client against real datagram sockets, and the shipped systemd unit/config."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamdenoise.sdnotify import Notifier

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "streamdenoise@.service"
EXAMPLE = ROOT / "systemd" / "example.toml"

needs_unix = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX sockets")


def _receive(sock: socket.socket) -> str:
    """One datagram from `sock`, decoded."""
    return sock.recv(4096).decode()


@pytest.fixture
def short_tmp(tmp_path: Path) -> Iterator[Path]:
    """A directory with a short path (AF_UNIX paths are limited to ~108 bytes)."""
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    directory = Path("/tmp") / f"sdn-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def listener(short_tmp: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound filesystem datagram socket and its `$NOTIFY_SOCKET` value."""
    path = short_tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5.0)
    sock.bind(str(path))
    try:
        yield sock, str(path)
    finally:
        sock.close()


@needs_unix
def test_messages_arrive(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready()
    assert _receive(sock) == "READY=1"
    assert notifier.status("a\nb")
    assert _receive(sock) == "STATUS=a b"
    assert notifier.status("x\r\ny\n")
    assert _receive(sock) == "STATUS=x y"
    assert notifier.watchdog()
    assert _receive(sock) == "WATCHDOG=1"
    assert notifier.stopping()
    assert _receive(sock) == "STOPPING=1"
    assert notifier.extend_timeout(90)
    assert _receive(sock) == "EXTEND_TIMEOUT_USEC=90000000"
    assert notifier.reloading()
    lines = _receive(sock).split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    assert int(lines[1].split("=", 1)[1]) > 0


@needs_unix
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only")
def test_abstract_namespace_socket() -> None:
    name = f"streamdenoise-test-{os.getpid()}-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5.0)
    try:
        sock.bind(b"\0" + name.encode())
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert _receive(sock) == "READY=1"
        assert notifier.status("12 done")
        assert _receive(sock) == "STATUS=12 done"
    finally:
        sock.close()


def test_no_socket_is_a_noop() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.status("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert not notifier.reloading()
    assert not notifier.extend_timeout(10)
    assert notifier.watchdog_interval() is None
    assert not Notifier.from_environment({"NOTIFY_SOCKET": ""}).enabled
    assert not Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"}).ready()


@needs_unix
def test_vanished_socket_does_not_raise(short_tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = short_tmp / "gone.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.close()
    path.unlink()
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(path)})
    with caplog.at_level("DEBUG", logger="streamdenoise.sdnotify"):
        assert not notifier.ready()
        assert not notifier.watchdog()
        assert not notifier.status("still alive")
    assert len([r for r in caplog.records if r.name == "streamdenoise.sdnotify"]) == 1


@needs_unix
def test_closed_listener_does_not_raise(short_tmp: Path) -> None:
    path = short_tmp / "closed.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.close()  # the file stays, nobody listens: ECONNREFUSED
    assert not Notifier.from_environment({"NOTIFY_SOCKET": str(path)}).ready()


def test_watchdog_interval() -> None:
    env = {"WATCHDOG_USEC": "120000000"}
    assert Notifier.from_environment(env).watchdog_interval() == 60.0
    own = {**env, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environment(own).watchdog_interval() == 60.0
    foreign = {**env, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environment(foreign).watchdog_interval() is None
    assert Notifier.from_environment({"WATCHDOG_USEC": "junk"}).watchdog_interval() is None
    assert Notifier.from_environment({"WATCHDOG_USEC": "0"}).watchdog_interval() is None


def _unit() -> configparser.RawConfigParser:
    """The unit parsed leniently (repeated keys such as DeviceAllow= keep the last value)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    return parser


def _assignments(section: str) -> list[tuple[str, str]]:
    """Every `Key=value` line of `section` of the unit, repeats included."""
    pairs: list[tuple[str, str]] = []
    current = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def test_unit_settings() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["KillMode"] == "mixed"
    assert service["Restart"] == "on-failure"
    assert int(service["WatchdogSec"]) > 0
    assert service["PrivateDevices"] == "no"
    assert service["ProtectSystem"] == "strict"
    assert service["DevicePolicy"] == "closed"
    assert "%i.toml" in service["ExecStart"] and "--headless" in service["ExecStart"]
    assert "MemoryDenyWriteExecute" not in service
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    environment = [v for k, v in _assignments("Service") if k == "Environment"]
    assert "TORCHINDUCTOR_CACHE_DIR=%C/streamdenoise/inductor" in environment
    devices = [v for k, v in _assignments("Service") if k == "DeviceAllow"]
    for group in ("char-nvidia-frontend", "char-nvidia-uvm", "char-nvidia-caps"):
        assert f"{group} rw" in devices
    assert "/dev/nvidiactl rw" in devices


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_verifies(tmp_path: Path) -> None:
    # ExecStart points at /opt/streamdenoise, absent here: verify a copy running /bin/true.
    text = UNIT.read_text(encoding="utf-8")
    lines = [
        "ExecStart=/bin/true" if line.startswith("ExecStart=") else line
        for line in text.splitlines()
    ]
    copy = tmp_path / UNIT.name
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Ignore unrelated noise about other units of this host; nothing may concern ours.
    ours = [line for line in result.stderr.splitlines() if "streamdenoise" in line]
    assert result.returncode == 0, result.stderr
    assert ours == [], result.stderr


def test_example_config() -> None:
    tomllib = pytest.importorskip("tomllib")
    settings = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    keys = {
        "watch": {"watch_dir", "include", "exclude", "polling", "settle_seconds"},
        "denoise": {"device", "bin", "model"},
        "outputs": {"out_dir", "float16"},
        "readiness": {"particle_diameter"},
        "display": {"headless", "status_interval"},
    }
    assert settings["version"] == 1
    for table, names in keys.items():
        assert names <= set(settings[table]), table
    # Documented but commented out: pixel_size (bin and pixel_size exclude each other), and
    # batch_size and compile (their defaults follow the device).
    for key in ("pixel_size", "batch_size", "compile"):
        assert key not in settings["denoise"]
        assert f"# {key} = " in EXAMPLE.read_text(encoding="utf-8")
    assert settings["display"]["headless"] is True
    watch = settings["watch"]
    assert all(isinstance(glob, str) for glob in watch["include"] + watch["exclude"])


def _drain(sock: socket.socket, quiet: float) -> list[str]:
    """The datagrams that arrive until none comes for `quiet` seconds."""
    sock.settimeout(quiet)
    messages = []
    while True:
        try:
            messages.append(_receive(sock))
        except TimeoutError:
            return messages


@needs_unix
def test_alive_while_pings_during_a_long_call_and_stops_after(
    listener: tuple[socket.socket, str],
) -> None:
    sock, address = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})
    with notifier.alive_while(limit=60.0):
        assert _receive(sock) == "WATCHDOG=1"  # every 0.05 s while inside
        assert _receive(sock) == "WATCHDOG=1"
    _drain(sock, 0.2)  # a ping sent as the block ended
    assert _drain(sock, 0.2) == []


def test_alive_while_without_a_watchdog_does_nothing() -> None:
    with Notifier(None).alive_while(limit=1.0):
        pass


@needs_unix
def test_alive_while_stops_pinging_a_call_that_hangs_past_the_limit(
    listener: tuple[socket.socket, str],
) -> None:
    sock, address = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})
    with notifier.alive_while(limit=0.12):
        time.sleep(0.6)  # pings at 0.05 and 0.10 s, then none: systemd would restart it
    assert 1 <= len(_drain(sock, 0.05)) <= 3
