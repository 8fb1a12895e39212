"""Decide when a file written by the microscope is complete enough to read (not to be confused
with picking readiness, `streamdenoise.stats.readiness`).

A file is ready once its size and mtime have been unchanged for ``settle_seconds`` and, for
MRC files, its size equals what its header implies (1024 + extended header + nx·ny·nz·itemsize
bytes). A file that stays unchanged but not ready for ``timeout_seconds`` is invalid; a stable
file whose header is not MRC is invalid at once.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from streamdenoise.errors import MicrographError
from streamdenoise.io.mrc import expected_mrc_size

__all__ = ["MRC_SUFFIXES", "Completeness", "CompletenessState", "CompletenessTracker"]

CompletenessState = Literal["pending", "ready", "invalid", "vanished"]
MRC_SUFFIXES: frozenset[str] = frozenset({".mrc", ".mrcs", ".map"})


@dataclass(frozen=True)
class Completeness:
    """Result of one check: ``state``, the file's size (bytes) and mtime (ns) when it could be
    stat'ed, and a human-readable ``reason`` (empty when ready)."""

    state: CompletenessState
    size: int | None = None
    mtime_ns: int | None = None
    reason: str = ""


@dataclass
class _Track:
    size: int
    mtime_ns: int
    stable_since: float  # clock seconds of the first sight or last change of size or mtime


class _Problem(NamedTuple):
    waiting: str | None  # reason while waiting for the writer; None: waiting cannot help
    final: str  # reason once declared invalid


class CompletenessTracker:
    """Tracks files between checks (not thread-safe: call from one thread).

    ``settle_seconds``: how long size and mtime must stay unchanged. ``timeout_seconds``: how
    long a file may stay unchanged and not ready before it is declared invalid; the timeout
    counts from the last change, so a file that is still being written is never cut off.
    ``clock`` gives monotonic seconds. Call ``forget`` for files that are done with, so the
    tracker holds only files still in progress.
    """

    def __init__(
        self,
        settle_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settle_seconds < 0 or timeout_seconds < settle_seconds:
            raise ValueError(
                f"need 0 <= settle_seconds <= timeout_seconds, got {settle_seconds} "
                f"and {timeout_seconds}"
            )
        self.settle_seconds = settle_seconds
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._tracks: dict[Path, _Track] = {}

    def __len__(self) -> int:
        """Number of files being tracked."""
        return len(self._tracks)

    def forget(self, path: Path) -> None:
        """Stop tracking ``path`` (no error if it was not tracked)."""
        self._tracks.pop(Path(path), None)

    def check(self, path: Path) -> Completeness:
        """Stat ``path`` (and read its MRC header once stable) and say whether it is ready.

        A failing stat other than "no such file" (e.g. a network mount that is down) is
        pending without a timeout: an outage must not invalidate every file.
        """
        path = Path(path)
        now = self._clock()
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self.forget(path)
            return Completeness("vanished", reason="file no longer exists")
        except OSError as exc:
            return Completeness("pending", reason=f"cannot stat: {exc}")
        size, mtime_ns = st.st_size, st.st_mtime_ns
        if not stat.S_ISREG(st.st_mode):
            return Completeness("invalid", size, mtime_ns, "not a regular file")
        track = self._tracks.get(path)
        if track is None:
            track = self._tracks[path] = _Track(size, mtime_ns, now)
        elif (track.size, track.mtime_ns) != (size, mtime_ns):
            track.size, track.mtime_ns, track.stable_since = size, mtime_ns, now
        unchanged = now - track.stable_since
        if unchanged < self.settle_seconds:
            return Completeness(
                "pending",
                size,
                mtime_ns,
                f"settling: unchanged for {unchanged:.1f} of {self.settle_seconds:g} s",
            )
        try:
            problem = self._content_problem(path, size)
        except FileNotFoundError:
            self.forget(path)
            return Completeness("vanished", reason="file no longer exists")
        if problem is None:
            return Completeness("ready", size, mtime_ns)
        if problem.waiting is None:
            return Completeness("invalid", size, mtime_ns, problem.final)
        if unchanged < self.timeout_seconds:
            return Completeness("pending", size, mtime_ns, problem.waiting)
        return Completeness("invalid", size, mtime_ns, f"{problem.final} for {unchanged:.0f} s")

    def _content_problem(self, path: Path, size: int) -> _Problem | None:
        """None if the content is complete. Raises FileNotFoundError if the file vanished.

        Read errors (permissions, EIO/ESTALE on a network mount) may clear up, so they are
        waited on like an incomplete file; a header that is not a supported MRC is final.
        """
        if size == 0:
            return _Problem("zero-byte file", "zero-byte file")
        if path.suffix.lower() not in MRC_SUFFIXES:
            return None
        try:
            expected = expected_mrc_size(path)
        except MicrographError as exc:
            cause = exc.__cause__
            if isinstance(cause, FileNotFoundError):
                raise FileNotFoundError(path) from exc
            if isinstance(cause, OSError):  # EIO, ESTALE, permissions: may clear up; wait
                return _Problem(exc.reason, exc.reason)
            return _Problem(None, exc.reason)
        if expected > size:
            return _Problem(
                f"incomplete: {size:,} of {expected:,} bytes",
                f"truncated: {size:,} of {expected:,} bytes",
            )
        if expected < size:
            reason = f"size mismatch: {size:,} bytes but the header implies {expected:,}"
            return _Problem(reason, reason)
        return None
