"""Find candidate micrographs in a watched directory: filesystem events, and rescans for lost ones.

watchdog events are lost on network filesystems (inotify sees nothing written by another host),
on queue overflow and when the observer thread dies, so the event handler only collects
candidate paths, a periodic rescan lists the tree again and hands out the names it did not
list the time before, and ``ensure_alive`` restarts a dead observer. A rescan reads
directories only (no ``stat`` per file, so a 10,000-file session on a network share costs a
few directory reads), and never enters the ``skip`` folders (the daemon's outputs). Whether
a file is complete, and whether it was already processed, is decided elsewhere.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

__all__ = [
    "DEFAULT_INCLUDE",
    "NETWORK_FILESYSTEMS",
    "TEMPORARY_SUFFIXES",
    "Discovery",
    "filesystem_type",
    "is_ignored",
    "is_network_filesystem",
    "matches",
]

log = logging.getLogger("streamdenoise.watch")

DEFAULT_INCLUDE: tuple[str, ...] = ("*.mrc", "*.tif", "*.tiff")
TEMPORARY_SUFFIXES: tuple[str, ...] = (
    ".tmp",
    ".part",
    ".partial",
    ".crdownload",
    ".swp",
    "~",
    ".filepart",
)
NETWORK_FILESYSTEMS: frozenset[str] = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "fuse.sshfs",
        "9p",
        "afs",
        "lustre",
        "gpfs",
        "beegfs",
        "ceph",
        "fuse.ceph-fuse",
        "glusterfs",
        "fuse.glusterfs",
    }
)
_EVENT_TYPES = frozenset({"created", "modified", "closed"})


def is_ignored(path: Path, root: Path) -> bool:
    """True for hidden files or files in hidden directories below ``root``, and for temporary
    names (``.tmp``, ``.part``, ``.partial``, ``.crdownload``, ``.swp``, ``~``, ``.filepart``).

    Raises ValueError if ``path`` is not below ``root``.
    """
    parts = Path(path).relative_to(root).parts
    return any(p.startswith(".") for p in parts) or parts[-1].lower().endswith(TEMPORARY_SUFFIXES)


def matches(path: Path, include: Sequence[str], exclude: Sequence[str] = ()) -> bool:
    """True if the file name matches an ``include`` glob and no ``exclude`` glob (fnmatch,
    case-insensitive)."""
    name = Path(path).name.lower()
    return any(fnmatch.fnmatchcase(name, g.lower()) for g in include) and not any(
        fnmatch.fnmatchcase(name, g.lower()) for g in exclude
    )


def _unescape_mount(field: str) -> str:
    """Undo the octal escapes of /proc/mounts (``\\040`` is a space)."""
    return field.encode("latin-1").decode("unicode_escape").encode("latin-1").decode()


def filesystem_type(path: str | Path, mounts_text: str) -> str | None:
    """Filesystem type of the mount holding ``path`` (longest mount-point prefix), from the text
    of /proc/mounts; None if no mount matches. ``path`` is used as given (not resolved)."""
    target = Path(path).parts
    best: tuple[int, str] | None = None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = Path(_unescape_mount(fields[1])).parts
        if target[: len(mount)] == mount and (best is None or len(mount) >= best[0]):
            best = (len(mount), fields[2])
    return None if best is None else best[1]


def is_network_filesystem(path: Path, mounts_text: str | None = None) -> bool:
    """True if ``path`` lies on a network filesystem (NFS, SMB, sshfs, Lustre, GPFS, Ceph...).

    Reads /proc/mounts unless ``mounts_text`` is given; False where it cannot be read.
    """
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return False
    return filesystem_type(os.path.realpath(path), mounts_text) in NETWORK_FILESYSTEMS


class _CandidateHandler(FileSystemEventHandler):
    """Adds the paths of created, modified, closed and moved-in files to the candidate set."""

    def __init__(self, accept: Callable[[Path], bool], add: Callable[[Path], None]) -> None:
        self._accept = accept
        self._add = add

    def dispatch(self, event: FileSystemEvent) -> None:
        """Never raises: an exception here would kill the observer thread."""
        try:
            if event.is_directory:
                return
            if event.event_type == "moved":
                raw = event.dest_path
            elif event.event_type in _EVENT_TYPES:
                raw = event.src_path
            else:
                return
            path = Path(os.fsdecode(raw))
            if self._accept(path):
                self._add(path)
        except Exception:
            log.exception("ignoring a watch event that could not be handled: %r", event)


class Discovery:
    """Candidate files below ``root``: watchdog events between full rescans.

    ``polling=None`` chooses a polling observer on network filesystems and inotify (or the
    platform's native observer) elsewhere. ``rescan_interval`` and ``poll_interval`` are in
    seconds; ``clock`` gives monotonic seconds and only paces the rescans. Files below a
    ``skip`` folder are neither listed nor reported (events there included).

    The first scan (``start``) hands out every file; later rescans only the names the
    previous scan did not list: a file rewritten in place is the events' to report, and a
    name that disappears and comes back between two rescans is handed out again.
    """

    def __init__(
        self,
        root: Path,
        *,
        include: Sequence[str] = DEFAULT_INCLUDE,
        exclude: Sequence[str] = (),
        recursive: bool = True,
        polling: bool | None = None,
        rescan_interval: float = 30.0,
        poll_interval: float = 2.0,
        skip: Sequence[Path] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.skip = tuple(
            {Path(os.path.abspath(f)) for f in skip} | {Path(os.path.realpath(f)) for f in skip}
        )
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.recursive = recursive
        self.polling = is_network_filesystem(self.root) if polling is None else polling
        self.rescan_interval = rescan_interval
        self.poll_interval = poll_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: set[Path] = set()
        self._last_scan: float | None = None
        self._listed: set[Path] = set()
        self._observer_lock = threading.Lock()  # guards _observer; never held with _lock
        self._observer: BaseObserver | None = None
        self._restart_failing = False
        self._handler = _CandidateHandler(self._accepts, self._add)

    def _accepts(self, path: Path) -> bool:
        return (
            (self.recursive or path.parent == self.root)
            and not self._skipped(path)
            and not is_ignored(path, self.root)
            and matches(path, self.include, self.exclude)
        )

    def _skipped(self, path: Path) -> bool:
        return any(path.is_relative_to(folder) for folder in self.skip)

    def _add(self, path: Path) -> None:
        with self._lock:
            self._pending.add(path)

    def _walk(self, directory: str) -> Iterator[Path]:
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            log.warning("rescan: cannot list %s: %s", directory, exc)
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if self.recursive and not self._skipped(Path(entry.path)):
                        yield from self._walk(entry.path)
                elif entry.is_file():
                    path = Path(entry.path)
                    if self._accepts(path):
                        yield path
            except OSError as exc:
                log.warning("rescan: cannot inspect %s: %s", entry.path, exc)

    def scan(self) -> set[Path]:
        """List the tree now: every matching, non-ignored file below the root (directory
        reads only); remembered, so that the next rescan can tell new names."""
        found = set(self._walk(os.fspath(self.root)))
        with self._lock:
            self._last_scan = self._clock()
            self._listed = found
        return found

    def _start_observer(self) -> None:
        observer: BaseObserver = (
            PollingObserver(timeout=self.poll_interval) if self.polling else Observer()
        )
        observer.schedule(self._handler, os.fspath(self.root), recursive=self.recursive)
        observer.start()
        self._observer = observer

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join()

    def start(self) -> None:
        """Scan the files already present (they become candidates) and start the observer."""
        found = self.scan()
        with self._lock:
            self._pending |= found
        with self._observer_lock:
            self._start_observer()

    def poll_candidates(self) -> set[Path]:
        """Return and clear the candidates seen since the last call; when
        ``rescan_interval`` seconds have passed since the previous scan, adds the names a
        rescan lists that the previous scan did not."""
        with self._lock:
            due = self._last_scan is None or self._clock() - self._last_scan >= self.rescan_interval
            listed_before = self._listed
        found = self.scan() - listed_before if due else set()
        with self._lock:
            found |= self._pending
            self._pending = set()
        return found

    def is_alive(self) -> bool:
        """True if the observer thread and all its emitter threads are running."""
        observer = self._observer
        return (
            observer is not None
            and observer.is_alive()
            and bool(observer.emitters)
            and all(e.is_alive() for e in observer.emitters)
        )

    def ensure_alive(self) -> bool:
        """Restart the observer if it died (e.g. after an error on a network mount); returns
        whether it is running afterwards. Files missed meanwhile are found by the rescan."""
        with self._observer_lock:
            if self.is_alive():
                return True
            if not self._restart_failing:
                log.warning("watch observer for %s is not running; restarting it", self.root)
            self._stop_observer()
            try:
                self._start_observer()
            except OSError as exc:
                if not self._restart_failing:
                    log.warning("cannot restart the watch observer for %s: %s", self.root, exc)
                self._restart_failing = True
                return False
            if self._restart_failing:
                log.warning("watch observer for %s is running again", self.root)
            self._restart_failing = False
            return True

    def stop(self) -> None:
        """Stop the observer and wait for its thread."""
        with self._observer_lock:
            self._stop_observer()

    def __enter__(self) -> Discovery:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
