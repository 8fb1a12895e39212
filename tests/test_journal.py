"""Tests of the SQLite processing journal (real database files, a real killed child process)."""

from __future__ import annotations

import select
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeClock

from streamdenoise.watch.journal import Journal, JournalError, params_hash


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def journal(tmp_path: Path, clock: FakeClock) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite", max_attempts=3, clock=clock) as j:
        yield j


MIC = Path("/data/session/mic_0001.mrc")
H = params_hash(model="abc", tile=512)


def test_state_transitions(journal: Journal, clock: FakeClock) -> None:
    assert journal.entry(MIC) is None
    assert journal.needs_processing(MIC, 100, 7, H)
    journal.mark_seen(MIC, 100, 7, H)
    e = journal.entry(MIC)
    assert e is not None
    assert (e.state, e.attempts, e.first_seen, e.outputs) == ("seen", 0, 1000.0, None)
    clock.now = 1001.0
    journal.mark_processing(MIC, 100, 7, H)
    assert journal.entry(MIC).state == "processing"  # type: ignore[union-attr]
    assert journal.needs_processing(MIC, 100, 7, H)
    clock.now = 1003.5
    journal.mark_done(MIC, {"denoised": "/out/mic_0001.mrc"}, latency=2.5)
    e = journal.entry(MIC)
    assert e is not None
    assert e.state == "done"
    assert e.outputs == {"denoised": "/out/mic_0001.mrc"}
    assert (e.latency, e.first_seen, e.updated, e.size, e.mtime_ns) == (2.5, 1000.0, 1003.5, 100, 7)
    assert not journal.needs_processing(MIC, 100, 7, H)
    counts = {"seen": 0, "processing": 0, "done": 1, "failed": 0, "quarantined": 0}
    assert journal.counts() == counts


def test_needs_processing_after_identity_or_params_change(journal: Journal) -> None:
    journal.mark_processing(MIC, 100, 7, H)
    journal.mark_done(MIC, {}, latency=None)
    assert not journal.needs_processing(MIC, 100, 7, H)
    assert journal.needs_processing(MIC, 101, 7, H)  # replaced: size
    assert journal.needs_processing(MIC, 100, 8, H)  # replaced: mtime
    h2 = params_hash(model="abc", tile=256)
    assert journal.needs_processing(MIC, 100, 7, h2)  # parameters changed
    assert not journal.needs_processing(Path("/data/session/../session/mic_0001.mrc"), 100, 7, H)
    journal.mark_seen(MIC, 100, 7, h2)  # a new hash restarts the row
    e = journal.entry(MIC)
    assert e is not None
    assert (e.state, e.params_hash, e.outputs, e.latency) == ("seen", h2, None, None)


def test_file_replaced_while_processing_is_processed_again(journal: Journal) -> None:
    journal.mark_processing(MIC, 100, 7, H)
    journal.mark_seen(MIC, 200, 9, H)  # replaced while the job runs
    journal.mark_done(MIC, {}, latency=1.0)  # the job ends: it processed the old content
    e = journal.entry(MIC)
    assert e is not None
    assert (e.state, e.size, e.mtime_ns) == ("done", 100, 7)
    assert journal.needs_processing(MIC, 200, 9, H)
    journal.mark_seen(MIC, 200, 9, H)
    assert journal.entry(MIC).state == "seen"  # type: ignore[union-attr]


def test_mark_seen_keeps_state_and_attempts_of_same_identity(journal: Journal) -> None:
    journal.mark_processing(MIC, 100, 7, H)
    assert journal.mark_failed(MIC, "boom") == "failed"
    journal.mark_seen(MIC, 100, 7, H)
    e = journal.entry(MIC)
    assert e is not None
    assert (e.state, e.attempts, e.error) == ("failed", 1, "boom")
    journal.mark_processing(MIC, 100, 7, H)
    assert journal.entry(MIC).attempts == 1  # type: ignore[union-attr]


def test_quarantine_after_max_attempts(journal: Journal) -> None:
    for attempt in range(1, 4):
        journal.mark_processing(MIC, 100, 7, H)
        state = journal.mark_failed(MIC, f"MicrographError: bad mode (attempt {attempt})")
        assert state == ("quarantined" if attempt == 3 else "failed")
        assert journal.needs_processing(MIC, 100, 7, H) == (attempt < 3)
    (q,) = journal.quarantined()
    assert q.path == MIC
    assert q.attempts == 3
    assert q.error == "MicrographError: bad mode (attempt 3)"
    # a replaced file (new identity) or new parameters are tried again, from zero attempts
    assert journal.needs_processing(MIC, 200, 7, H)
    journal.mark_seen(MIC, 200, 7, H)
    assert journal.entry(MIC).attempts == 0  # type: ignore[union-attr]


def test_quarantine_and_retry(journal: Journal) -> None:
    a, b, c = (Path(f"/d/{n}.mrc") for n in "abc")
    for p in (a, b, c):
        journal.mark_seen(p, 1, 1, H)
    journal.quarantine(a, "zero-byte file for 600 s")
    journal.quarantine(b, "not an MRC file")
    journal.mark_failed(c, "oops")
    reasons = [e.error for e in journal.quarantined()]
    assert reasons == ["zero-byte file for 600 s", "not an MRC file"]
    assert not journal.needs_processing(a, 1, 1, H)
    assert journal.waiting() == []
    assert journal.retry([a]) == 1
    assert journal.waiting() == [a]  # how the running daemon learns of the retry
    e = journal.entry(a)
    assert e is not None
    assert (e.state, e.attempts, e.error) == ("seen", 0, None)
    assert journal.needs_processing(a, 1, 1, H)
    assert journal.retry() == 2  # b (quarantined) and c (failed)
    assert journal.counts()["seen"] == 3
    assert journal.retry() == 0


def test_updates_of_unknown_path_are_errors(journal: Journal) -> None:
    with pytest.raises(JournalError, match="no journal row"):
        journal.mark_done(MIC, {}, None)
    with pytest.raises(JournalError):
        journal.mark_failed(MIC, "x")
    with pytest.raises(JournalError):
        journal.quarantine(MIC, "x")


def test_reset_in_flight_after_close_without_done(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "j.sqlite"
    with Journal(db, clock=clock) as j:
        j.mark_seen(MIC, 100, 7, H)
        j.mark_processing(MIC, 100, 7, H)
        j.mark_processing(Path("/d/other.mrc"), 5, 5, H)
        j.mark_done(Path("/d/other.mrc"), {}, 1.0)
    with Journal(db, clock=clock) as j:
        assert j.reset_in_flight() == 1
        e = j.entry(MIC)
        assert e is not None
        assert (e.state, e.attempts) == ("seen", 1)
        assert "interrupted" in (e.error or "")
        assert j.needs_processing(MIC, 100, 7, H)
        assert j.reset_in_flight() == 0


def test_file_that_crashes_every_run_is_quarantined(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    for _ in range(2):
        with Journal(db, max_attempts=2) as j:
            j.reset_in_flight()
            j.mark_processing(MIC, 100, 7, H)
    with Journal(db, max_attempts=2) as j:
        assert j.reset_in_flight() == 1
        assert j.entry(MIC).state == "quarantined"  # type: ignore[union-attr]
        assert not j.needs_processing(MIC, 100, 7, H)


CHILD = """
import sys, time
from pathlib import Path
from streamdenoise.watch.journal import Journal
journal = Journal(Path(sys.argv[1]))
journal.mark_seen(Path(sys.argv[2]), 100, 7, "h")
journal.mark_processing(Path(sys.argv[2]), 100, 7, "h")
print("processing", flush=True)
time.sleep(60)
"""


def test_reset_in_flight_after_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(MIC)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 10.0)
        line = child.stdout.readline() if ready else ""
        child.kill()  # SIGKILL: no cleanup, no close
        child.wait()
        assert line == "processing\n", child.stderr.read() if child.stderr else ""
    assert child.returncode == -9
    with Journal(db) as j:
        assert j.reset_in_flight() == 1
        assert j.entry(MIC).state == "seen"  # type: ignore[union-attr]
        assert j.needs_processing(MIC, 100, 7, "h")


def test_persistence_and_done_order(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "j.sqlite"
    with Journal(db, clock=clock) as j:
        for i, name in enumerate(["c", "a", "b"]):
            p = Path(f"/d/{name}.mrc")
            j.mark_processing(p, i, i, H)
            clock.now += 1.0
            j.mark_done(p, {"n": i}, latency=0.5 * i)
    with Journal(db, clock=clock) as j:
        done = j.done_entries()
        assert [e.path.name for e in done] == ["c.mrc", "a.mrc", "b.mrc"]
        assert [e.outputs for e in done] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert not j.needs_processing(Path("/d/a.mrc"), 1, 1, H)
        assert j.counts()["done"] == 3


def test_concurrent_use_from_two_threads(journal: Journal) -> None:
    errors: list[BaseException] = []

    def work(prefix: str) -> None:
        try:
            for i in range(50):
                p = Path(f"/d/{prefix}{i}.mrc")
                journal.mark_seen(p, i, i, H)
                journal.mark_processing(p, i, i, H)
                journal.mark_done(p, {"i": i}, latency=0.1)
                assert not journal.needs_processing(p, i, i, H)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(prefix,)) for prefix in "xy"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    assert not errors
    assert journal.counts()["done"] == 100


def test_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    Journal(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(JournalError, match="schema version 99 is newer"):
        Journal(db)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    db.write_bytes(b"this is not a database, just text" * 100)
    with pytest.raises(JournalError, match=r"not a readable journal .*move it .*aside"):
        Journal(db)


def test_a_damaged_journal_is_refused_not_rebuilt(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    with Journal(db) as j:
        for index in range(2000):  # several pages, so that cutting some off breaks the file
            j.mark_seen(Path(f"/data/mic_{index:05d}.mrc"), index, index, H)
    data = db.read_bytes()
    pages = len(data) // 4096
    db.write_bytes(data[:4096] + b"\xff" * 4096 * (pages - 1))  # header kept, pages garbage
    with pytest.raises(JournalError, match=str(db)):
        Journal(db)
    assert len(db.read_bytes()) == len(data)  # left as it was, for recovery


def test_reasons_are_one_short_line(journal: Journal) -> None:
    journal.mark_seen(MIC, 1, 1, H)
    compiler_output = "C++ compile error\n" + "In file included from …\n" * 5000
    journal.mark_failed(MIC, compiler_output)
    error = journal.entry(MIC).error
    assert len(error) <= 300 and "\n" not in error and error.startswith("C++ compile error")
    journal.quarantine(MIC, compiler_output)
    assert len(journal.entry(MIC).error) <= 300


def test_release_after_a_shutdown_does_not_count_a_try(journal: Journal) -> None:
    journal.mark_seen(MIC, 1, 1, H)
    for _ in range(5):  # more stops than max_attempts
        journal.mark_processing(MIC, 1, 1, H)
        journal.release(MIC)
    entry = journal.entry(MIC)
    assert (entry.state, entry.attempts, entry.error) == ("seen", 0, None)
    assert journal.needs_processing(MIC, 1, 1, H)


def test_wal_mode(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        j.mark_seen(MIC, 1, 1, H)
        assert (tmp_path / "j.sqlite-wal").exists()


def test_params_hash_is_stable() -> None:
    h = params_hash(model="m1", tile=512, sigma=0.5, out=Path("/o"))
    assert h == params_hash(out="/o", sigma=0.5, tile=512, model="m1")
    assert len(h) == 16
    assert int(h, 16) >= 0
    assert h != params_hash(model="m1", tile=512, sigma=0.25, out=Path("/o"))
    with pytest.raises(TypeError, match="cannot encode"):
        params_hash(thing=object())
