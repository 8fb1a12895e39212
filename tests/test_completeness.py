"""Tests of file completeness: real MRC files written with mrcfile and raw bytes, injected clock."""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from fakes import FakeClock

from streamdenoise.watch.completeness import Completeness, CompletenessTracker

SETTLE = 2.0  # seconds
TIMEOUT = 600.0  # seconds
FULL = 1024 + 64 * 64 * 4  # bytes of a 64×64 float32 MRC without extended header


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


@pytest.fixture
def tracker(clock: FakeClock) -> CompletenessTracker:
    return CompletenessTracker(settle_seconds=SETTLE, timeout_seconds=TIMEOUT, clock=clock)


def write_mrc(path: Path) -> Path:
    data = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    with mrcfile.new(path, data=data) as mrc:
        mrc.voxel_size = 1.0
    assert path.stat().st_size == FULL
    return path


def test_complete_mrc_is_ready_after_settle_time(
    tmp_path: Path, tracker: CompletenessTracker, clock: FakeClock
) -> None:
    path = write_mrc(tmp_path / "mic.mrc")
    first = tracker.check(path)
    assert first.state == "pending"
    assert first.size == FULL
    assert first.mtime_ns == path.stat().st_mtime_ns
    assert "settling" in first.reason
    clock.now += SETTLE - 0.1
    assert tracker.check(path).state == "pending"
    clock.now += 0.1
    assert tracker.check(path) == Completeness("ready", FULL, path.stat().st_mtime_ns, "")
    assert len(tracker) == 1
    tracker.forget(path)
    assert len(tracker) == 0


def test_growing_file_stays_pending_and_is_not_timed_out(
    tmp_path: Path, tracker: CompletenessTracker, clock: FakeClock
) -> None:
    path = write_mrc(tmp_path / "mic.mrc")
    os.truncate(path, 1024)
    for size in range(2048, FULL, 2048):  # written in chunks over a long time
        assert tracker.check(path).state == "pending"
        os.truncate(path, size)
        clock.now += TIMEOUT / 4  # longer than settle, but the file changed meanwhile
        result = tracker.check(path)
        assert result.state == "pending"
        assert "settling" in result.reason
    os.truncate(path, FULL)
    tracker.check(path)
    clock.now += SETTLE
    assert tracker.check(path).state == "ready"


def test_mtime_change_restarts_the_settle_time(
    tmp_path: Path, tracker: CompletenessTracker, clock: FakeClock
) -> None:
    path = write_mrc(tmp_path / "mic.mrc")
    tracker.check(path)
    clock.now += SETTLE - 0.5
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert tracker.check(path).state == "pending"
    clock.now += 1.0
    assert tracker.check(path).state == "pending"
    clock.now += SETTLE
    assert tracker.check(path).state == "ready"


def test_truncated_mrc_is_pending_then_invalid(
    tmp_path: Path, tracker: CompletenessTracker, clock: FakeClock
) -> None:
    path = write_mrc(tmp_path / "mic.mrc")
    os.truncate(path, 1024 + 1000)
    tracker.check(path)
    clock.now += SETTLE
    result = tracker.check(path)
    assert result.state == "pending"
    assert result.reason == f"incomplete: 2,024 of {FULL:,} bytes"
    clock.now += TIMEOUT - SETTLE - 1.0
    assert tracker.check(path).state == "pending"
    clock.now += 1.0
    result = tracker.check(path)
    assert result.state == "invalid"
    assert result.reason == f"truncated: 2,024 of {FULL:,} bytes for 600 s"
    assert result.size == 2024


def test_larger_than_header_implies_is_pending_then_invalid(
    tmp_path: Path, tracker: CompletenessTracker, clock: FakeClock
) -> None:
    path = write_mrc(tmp_path / "mic.mrc")
    with path.open("ab") as f:
        f.write(b"\0" * 100)
    tracker.check(path)
    clock.now += SETTLE
    result = tracker.check(path)
    assert result.state == "pending"
    assert "size mismatch" in result.reason
    clock.now += TIMEOUT
    assert tracker.check(path).state == "invalid"


def test_zero_byte_file_is_invalid_after_timeout(
    tmp_path: Path, tracker: CompletenessTracker, clock: FakeClock
) -> None:
    for name in ["empty.mrc", "empty.tif"]:
        path = tmp_path / name
        path.touch()
        tracker.check(path)
        clock.now += SETTLE
        assert tracker.check(path) == Completeness(
            "pending", 0, path.stat().st_mtime_ns, "zero-byte file"
        )
    clock.now += TIMEOUT
    for name in ["empty.mrc", "empty.tif"]:
        result = tracker.check(tmp_path / name)
        assert result.state == "invalid"
        assert result.reason.startswith("zero-byte file for ")


@pytest.mark.parametrize("text", [b"not a micrograph\n" * 200, b"hello\n"], ids=["long", "short"])
def test_text_file_named_mrc_is_invalid_once_stable(
    tmp_path: Path, tracker: CompletenessTracker, clock: FakeClock, text: bytes
) -> None:
    path = tmp_path / "notes.mrc"
    path.write_bytes(text)
    assert tracker.check(path).state == "pending"  # might still be growing
    clock.now += SETTLE
    result = tracker.check(path)
    assert result.state == "invalid"
    assert result.reason
    assert result.size == len(text)


def test_vanished_file(tmp_path: Path, tracker: CompletenessTracker) -> None:
    path = write_mrc(tmp_path / "mic.mrc")
    assert tracker.check(path).state == "pending"
    path.unlink()
    assert tracker.check(path) == Completeness("vanished", reason="file no longer exists")
    assert len(tracker) == 0
    assert tracker.check(tmp_path / "never-existed.mrc").state == "vanished"


def test_tiff_needs_only_stability(
    tmp_path: Path, tracker: CompletenessTracker, clock: FakeClock
) -> None:
    path = tmp_path / "movie.tiff"
    path.write_bytes(b"II*\0" + b"\1" * 1000)  # content is not inspected
    assert tracker.check(path).state == "pending"
    with path.open("ab") as f:
        f.write(b"\2" * 1000)
    clock.now += SETTLE
    assert tracker.check(path).state == "pending"  # it grew: the settle time restarts
    clock.now += SETTLE
    assert tracker.check(path) == Completeness("ready", 2004, path.stat().st_mtime_ns, "")


def test_directory_is_invalid(tmp_path: Path, tracker: CompletenessTracker) -> None:
    (tmp_path / "odd.mrc").mkdir()
    assert tracker.check(tmp_path / "odd.mrc").state == "invalid"


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="settle_seconds"):
        CompletenessTracker(settle_seconds=10.0, timeout_seconds=5.0)
