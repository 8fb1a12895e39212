"""The state directory's lock: one journal writer at a time (the daemon or a batch run).

The lock is an exclusive `flock` on STATE/.lock, which holds the holder's pid. The kernel
releases it when the holder exits, however it exits (a `kill -9` included), so a stale
file never blocks a restart; `holder_alive` tells a reader (`streamdenoise status`)
whether the pid written there still runs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamdenoise.errors import AlreadyRunning

LOCK_NAME = ".lock"
"""The lock's file name in the state directory."""


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold the lock at `path` (its directory and file are created if missing) for the
    `with` block, with this process's pid written in it. Raises AlreadyRunning, naming the
    holder's pid, when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            raise AlreadyRunning(
                f"another streamdenoise (pid {holder or '?'}) is already writing to {path.parent}"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)


def holder_alive(path: Path) -> bool:
    """Whether the process whose pid is written in the lock at `path` still runs (a
    holder killed with SIGKILL or by a crash cannot say it stopped)."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (a system service)
        return True
    return True
