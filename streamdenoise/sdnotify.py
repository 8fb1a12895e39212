"""A tiny sd_notify client: datagrams to `$NOTIFY_SOCKET` (standard library only).

systemd's `Type=notify` protocol is one `AF_UNIX`/`SOCK_DGRAM` datagram of newline-separated
`KEY=VALUE` assignments per call. Without `$NOTIFY_SOCKET` (not started by systemd) every
method is a no-op, so the daemon calls them unconditionally. Sending never raises: if
systemd went away the daemon keeps working, and the failure is logged once at debug.

Typical use::

    notifier = Notifier.from_environment()
    notifier.extend_timeout(600)        # a long compile, within TimeoutStartSec
    notifier.ready()                    # after the model is compiled and warmed up
    notifier.status("312 done, 2.1 s/micrograph")
    interval = notifier.watchdog_interval()  # ping this often, only while making progress
    notifier.watchdog()
    notifier.stopping()                 # on SIGTERM, before draining
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


def _parse_address(address: str) -> str | bytes | None:
    """The `sendto` address of a `$NOTIFY_SOCKET` value, or None if it is not supported.

    `/path` is a filesystem socket; `@name` is in the Linux abstract namespace (a leading
    NUL byte). Other forms (`vsock:...`) are not supported by this client.
    """
    if address.startswith("/"):
        return address
    if address.startswith("@") and len(address) > 1:
        return b"\0" + address[1:].encode()
    return None


class Notifier:
    """Sends sd_notify messages to systemd; a no-op when not run under `Type=notify`."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        """Notify `address` (a `$NOTIFY_SOCKET` value; None or empty disables the notifier).

        watchdog_usec: the watchdog timeout in microseconds meant for this process, if any.
        """
        self._address: str | bytes | None = None
        if address:
            self._address = _parse_address(address)
            if self._address is None:
                log.debug("unsupported NOTIFY_SOCKET address %r; not notifying", address)
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._failed = False

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """A notifier from `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.

        env defaults to `os.environ`. The watchdog applies only when `$WATCHDOG_PID` is
        unset or equals our pid (as in `sd_watchdog_enabled`).
        """
        env = os.environ if env is None else env
        watchdog_usec: int | None = None
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            usec = 0
        pid = env.get("WATCHDOG_PID", "").strip()
        if usec > 0 and (not pid or pid == str(os.getpid())):
            watchdog_usec = usec
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when messages go somewhere (`$NOTIFY_SOCKET` was set and usable)."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` assignments as one datagram. True if it was sent.

        Never raises: errors are logged once at debug level.
        """
        if self._address is None or not assignments:
            return False
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self._address)
        except OSError as error:
            if not self._failed:
                self._failed = True
                log.debug("sd_notify to %r failed (ignored from now on): %s", self._address, error)
            return False
        return True

    def ready(self) -> bool:
        """`READY=1`: startup finished (send after compile and warm-up)."""
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        """`STATUS=text`, shown by `systemctl status`; newlines become spaces."""
        flat = " ".join(text.splitlines())
        return self.notify(f"STATUS={flat}")

    def watchdog(self) -> bool:
        """`WATCHDOG=1`: keep-alive ping; send only while the worker makes progress."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """`STOPPING=1`: shutdown began (draining in-flight work)."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """`RELOADING=1` with `MONOTONIC_USEC` (as `Type=notify-reload` requires); follow
        with `ready()` when the reload is done."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def extend_timeout(self, seconds: float) -> bool:
        """`EXTEND_TIMEOUT_USEC`: ask for `seconds` more from now (start, runtime or stop).

        Only effective while the current timeout has not passed; repeat it to keep extending.
        """
        usec = max(0, round(seconds * 1_000_000))
        return self.notify(f"EXTEND_TIMEOUT_USEC={usec}")

    def watchdog_interval(self) -> float | None:
        """Seconds between `watchdog()` pings (half the watchdog timeout), None if no watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    @contextmanager
    def alive_while(self, limit: float) -> Iterator[None]:
        """Send `WATCHDOG=1` from a helper thread while the caller is in one long call (a
        compilation, a batch), for at most `limit` s: a call that hangs longer stops the
        pings, and systemd restarts the service. Nothing without a watchdog."""
        interval = self.watchdog_interval()
        if interval is None:
            yield
            return
        finished = threading.Event()

        def ping() -> None:
            end = time.monotonic() + limit
            while not finished.wait(interval) and time.monotonic() < end:
                self.watchdog()

        thread = threading.Thread(target=ping, name="streamdenoise-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            finished.set()
            thread.join()

    def __repr__(self) -> str:
        return f"Notifier(address={self._address!r}, watchdog_usec={self._watchdog_usec})"
