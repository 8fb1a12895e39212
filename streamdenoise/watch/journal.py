"""Processing journal: one SQLite row per input file, so a restart resumes without redoing work.

A row is keyed by the file's path and remembers its identity (size in bytes, mtime in ns) and
the hash of the model and processing parameters it was (or is being) processed with. A file
is processed again when it is replaced (identity changes) or when the parameters change; a
file that keeps failing is quarantined with its reason until it changes or is retried.

Keep the journal on a local disk: SQLite's WAL mode does not work over network filesystems.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from streamdenoise.errors import FileProblem, one_line

__all__ = [
    "SCHEMA_VERSION",
    "STATES",
    "Journal",
    "JournalEntry",
    "JournalError",
    "State",
    "params_hash",
]

State = Literal["seen", "processing", "done", "failed", "quarantined"]
STATES: tuple[State, ...] = ("seen", "processing", "done", "failed", "quarantined")
SCHEMA_VERSION = 1
REASON_LIMIT = 300
"""Longest reason (characters, one line) a row keeps: the log has the whole story."""
UNREADABLE = (
    "it records which micrographs are done: restore it from a backup, or move it (with any "
    "journal.sqlite-wal beside it) aside to start a new journal, and every micrograph is "
    "done again"
)

_SCHEMA = (
    """CREATE TABLE files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    params_hash TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('seen', 'processing', 'done', 'failed', 'quarantined')),
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    first_seen REAL NOT NULL,
    updated REAL NOT NULL,
    outputs TEXT,
    latency REAL
)""",
    "CREATE INDEX files_state_updated ON files (state, updated)",
)
_COLUMNS = (
    "path, size, mtime_ns, params_hash, state, attempts, error, first_seen, updated, outputs, "
    "latency"
)
# Insert a fresh row, or restart an existing one whose identity or parameters differ. A row
# in flight is restarted only by mark_processing: were mark_seen to restart it, the running
# job's mark_done would then record the new identity as done without processing it.
_UPSERT_RESET = """
INSERT INTO files (path, size, mtime_ns, params_hash, state, attempts, first_seen, updated)
VALUES (:path, :size, :mtime_ns, :params_hash, :state, 0, :now, :now)
ON CONFLICT (path) DO UPDATE SET
    size = excluded.size, mtime_ns = excluded.mtime_ns, params_hash = excluded.params_hash,
    state = excluded.state, attempts = 0, error = NULL, first_seen = excluded.first_seen,
    updated = excluded.updated, outputs = NULL, latency = NULL
WHERE (files.size != excluded.size OR files.mtime_ns != excluded.mtime_ns
    OR files.params_hash != excluded.params_hash)
    AND (files.state != 'processing' OR excluded.state = 'processing')
"""


class JournalError(FileProblem):
    """The journal file cannot be used (corrupt, newer schema) or a path has no row."""


@dataclass(frozen=True)
class JournalEntry:
    """One journal row. Times are wall-clock seconds since the epoch; latency is in seconds."""

    path: Path
    size: int
    mtime_ns: int
    params_hash: str
    state: State
    attempts: int
    error: str | None
    first_seen: float
    updated: float
    outputs: dict[str, Any] | None
    latency: float | None


def params_hash(**parts: Any) -> str:
    """Stable hash (16 hex digits of sha256) of model and processing parameters.

    Values must be JSON-serialisable; paths are written as strings. Key order does not matter.
    """

    def encode(value: Any) -> str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise TypeError(f"params_hash: cannot encode {type(value).__name__} value {value!r}")

    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=encode)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _key(path: Path) -> str:
    return os.path.abspath(path)


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    path, size, mtime_ns, phash, state, attempts, error, first_seen, updated, outputs, lat = row
    return JournalEntry(
        path=Path(path),
        size=size,
        mtime_ns=mtime_ns,
        params_hash=phash,
        state=state,
        attempts=attempts,
        error=error,
        first_seen=first_seen,
        updated=updated,
        outputs=None if outputs is None else json.loads(outputs),
        latency=lat,
    )


class Journal:
    """SQLite journal of input files (WAL, synchronous=NORMAL), safe to share between threads.

    Paths are stored as absolute paths. ``max_attempts`` failures (or interrupted runs) of
    the same file identity quarantine it. ``clock`` gives wall-clock seconds.
    """

    def __init__(
        self, path: Path, max_attempts: int = 3, clock: Callable[[], float] = time.time
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.path = Path(path)
        self.max_attempts = max_attempts
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        try:
            self._open_schema()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise JournalError(self.path, f"not a readable journal ({exc}); {UNREADABLE}") from exc
        except JournalError:
            self._conn.close()
            raise

    def _open_schema(self) -> None:
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._transaction():
            (version,) = self._conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise JournalError(
                    self.path,
                    f"journal schema version {version} is newer than this program supports "
                    f"({SCHEMA_VERSION}); upgrade streamdenoise or use a new journal file",
                )
            if version == 0:
                for statement in _SCHEMA:
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            (check,) = self._conn.execute("PRAGMA quick_check(1)").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(one_line(check, 100))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and one write transaction; commit on success, roll back on error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back already
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def needs_processing(self, path: Path, size: int, mtime_ns: int, params_hash: str) -> bool:
        """False only if this identity and parameter hash is already done or quarantined."""
        rows = self._query(
            "SELECT 1 FROM files WHERE path = ? AND size = ? AND mtime_ns = ? "
            "AND params_hash = ? AND state IN ('done', 'quarantined')",
            (_key(path), size, mtime_ns, params_hash),
        )
        return not rows

    def _upsert(self, path: Path, size: int, mtime_ns: int, params_hash: str, state: State) -> None:
        args = {
            "path": _key(path),
            "size": size,
            "mtime_ns": mtime_ns,
            "params_hash": params_hash,
            "state": state,
            "now": self._clock(),
        }
        with self._transaction() as conn:
            conn.execute(_UPSERT_RESET, args)
            if state != "seen":
                conn.execute(
                    "UPDATE files SET state = :state, updated = :now WHERE path = :path", args
                )

    def mark_seen(self, path: Path, size: int, mtime_ns: int, params_hash: str) -> None:
        """Record a file. A row with the same identity and hash is left as it is (attempts and
        state kept); a new identity or hash restarts the row in state ``seen``, unless the row
        is being processed (then the new identity is seen again once that job has ended)."""
        self._upsert(path, size, mtime_ns, params_hash, "seen")

    def mark_processing(self, path: Path, size: int, mtime_ns: int, params_hash: str) -> None:
        """Record that processing of this identity and hash starts now (attempts are kept)."""
        self._upsert(path, size, mtime_ns, params_hash, "processing")

    def _update(self, path: Path, sql: str, args: dict[str, Any]) -> State:
        """Run one UPDATE of the row of ``path``; returns the row's new state."""
        args = {**args, "path": _key(path), "now": self._clock()}
        with self._transaction() as conn:
            if conn.execute(sql, args).rowcount == 0:
                raise JournalError(path, "no journal row for this path")
            (row,) = conn.execute("SELECT state FROM files WHERE path = ?", (args["path"],))
            return row[0]

    def mark_done(self, path: Path, outputs: dict[str, Any], latency: float | None) -> None:
        """Record success with the outputs (JSON-serialisable) and latency in seconds."""
        self._update(
            path,
            "UPDATE files SET state = 'done', error = NULL, outputs = :outputs, "
            "latency = :latency, updated = :now WHERE path = :path",
            {"outputs": json.dumps(outputs, sort_keys=True), "latency": latency},
        )

    def mark_failed(self, path: Path, error: str) -> State:
        """Count a failed attempt; returns ``"quarantined"`` once attempts reach max_attempts,
        else ``"failed"``. The reason is kept on one line of at most REASON_LIMIT characters."""
        return self._update(
            path,
            "UPDATE files SET attempts = attempts + 1, error = :error, updated = :now, "
            "state = CASE WHEN attempts + 1 >= :max THEN 'quarantined' ELSE 'failed' END "
            "WHERE path = :path",
            {"error": one_line(error, REASON_LIMIT), "max": self.max_attempts},
        )

    def quarantine(self, path: Path, reason: str) -> None:
        """Quarantine a file now (e.g. it is invalid), with the reason (cut as mark_failed's)."""
        self._update(
            path,
            "UPDATE files SET state = 'quarantined', error = :reason, updated = :now "
            "WHERE path = :path",
            {"reason": one_line(reason, REASON_LIMIT)},
        )

    def release(self, path: Path) -> None:
        """Put a row being processed back to ``seen`` without counting an attempt: a
        shutdown, not the file, interrupted it (it is processed again at the next start)."""
        self._update(
            path,
            "UPDATE files SET updated = :now, "
            "state = CASE WHEN state = 'processing' THEN 'seen' ELSE state END "
            "WHERE path = :path",
            {},
        )

    def reset_in_flight(self) -> int:
        """Call at start-up: rows left in ``processing`` by a crash or kill go back to ``seen``.

        The interruption counts as an attempt, so a file that crashes the process every time
        is quarantined after max_attempts restarts instead of looping. Returns the row count.
        """
        with self._transaction() as conn:
            return conn.execute(
                "UPDATE files SET attempts = attempts + 1, updated = :now, "
                "error = 'interrupted while processing (crash or kill)', "
                "state = CASE WHEN attempts + 1 >= :max THEN 'quarantined' ELSE 'seen' END "
                "WHERE state = 'processing'",
                {"now": self._clock(), "max": self.max_attempts},
            ).rowcount

    def retry(self, paths: Iterable[Path] | None = None) -> int:
        """Send quarantined and failed rows (all, or those of ``paths``) back to ``seen`` with
        attempts 0. Returns how many rows changed."""
        sql = (
            "UPDATE files SET state = 'seen', attempts = 0, error = NULL, updated = :now "
            "WHERE state IN ('quarantined', 'failed')"
        )
        now = self._clock()
        with self._transaction() as conn:
            if paths is None:
                return conn.execute(sql, {"now": now}).rowcount
            return sum(
                conn.execute(sql + " AND path = :path", {"now": now, "path": _key(p)}).rowcount
                for p in paths
            )

    def waiting(self) -> list[Path]:
        """Paths in ``seen``: found and not started, or sent back by ``retry`` (which the
        daemon learns here, not from the filesystem: the file did not change)."""
        return [Path(row[0]) for row in self._query("SELECT path FROM files WHERE state = 'seen'")]

    def entry(self, path: Path) -> JournalEntry | None:
        """The row of ``path``, or None."""
        rows = self._query(f"SELECT {_COLUMNS} FROM files WHERE path = ?", (_key(path),))
        return _entry(rows[0]) if rows else None

    def quarantined(self) -> list[JournalEntry]:
        """Quarantined rows, oldest quarantine first."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM files WHERE state = 'quarantined' ORDER BY updated, path"
        )
        return [_entry(r) for r in rows]

    def done_entries(self) -> list[JournalEntry]:
        """Done rows in order of completion."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM files WHERE state = 'done' ORDER BY updated, path"
        )
        return [_entry(r) for r in rows]

    def counts(self) -> dict[State, int]:
        """Number of rows in each state (every state present, zero if none)."""
        counts: dict[State, int] = dict.fromkeys(STATES, 0)
        for state, n in self._query("SELECT state, COUNT(*) FROM files GROUP BY state"):
            counts[state] = n
        return counts
