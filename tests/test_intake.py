"""Intake between discovery and the pipeline: completeness, journal check, batch order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from fakes import FakeClock

from streamdenoise.watch import CompletenessTracker, Journal
from streamdenoise.watch.intake import Intake, ReadyFile

HASH = "h"


def write_mrc(path: Path) -> Path:
    with mrcfile.new(path, data=np.zeros((8, 8), dtype=np.float32)):
        pass
    return path


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite") as opened:
        yield opened


def make_intake(
    tmp_path: Path, journal: Journal, clock: FakeClock, quarantined: list, **options: object
) -> Intake:
    settings: dict = {"order": "oldest", "max_batch": 2, "recheck_interval": 5.0} | options
    return Intake(
        journal,
        CompletenessTracker(1.0, 10.0, clock=clock),
        HASH,
        on_quarantined=lambda path, reason: quarantined.append((path.name, reason)),
        clock=clock,
        **settings,
    )


def test_complete_files_are_queued_invalid_ones_quarantined(
    tmp_path: Path, journal: Journal
) -> None:
    clock, quarantined = FakeClock(), []
    intake = make_intake(tmp_path, journal, clock, quarantined)
    good = write_mrc(tmp_path / "good.mrc")
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"not an MRC header" * 100)
    intake.offer([good, bad])
    intake.check_pending()
    assert not intake.ready and intake.pending == {good, bad}  # settling
    clock.now += 1.0
    intake.check_pending()
    assert list(intake.ready) == [good] and not intake.pending
    assert intake.found == {good, bad}
    assert journal.entry(good).state == "seen"
    assert journal.entry(bad).state == "quarantined"
    assert [name for name, _ in quarantined] == ["bad.mrc"]


def test_files_done_with_these_parameters_are_dropped(tmp_path: Path, journal: Journal) -> None:
    clock, quarantined = FakeClock(), []
    intake = make_intake(tmp_path, journal, clock, quarantined)
    path = write_mrc(tmp_path / "done.mrc")
    stat = path.stat()
    journal.mark_processing(path, stat.st_size, stat.st_mtime_ns, HASH)
    journal.mark_done(path, {}, 1.0)
    intake.offer([path, tmp_path / "gone.mrc"])
    intake.check_pending()
    assert not intake.pending and not intake.ready and not intake.found


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("oldest", [["a", "b"], ["c", "d"], ["e"]]),
        ("newest", [["e", "d"], ["c", "b"], ["a"]]),
        ("alternate", [["a", "b"], ["e", "d"], ["c"]]),
    ],
)
def test_batches_follow_the_order_and_are_marked_processing(
    tmp_path: Path, journal: Journal, order: str, expected: list[list[str]]
) -> None:
    intake = make_intake(tmp_path, journal, FakeClock(), [], order=order)
    items = [ReadyFile(tmp_path / f"{name}.mrc", 1, k) for k, name in enumerate("abcde")]
    intake.ready = {item.path: item for item in items}
    batches = [intake.start_batch() for _ in range(3)]
    assert [[item.path.stem for item in batch] for batch in batches] == expected
    assert {journal.entry(item.path).state for item in items} == {"processing"}
    assert intake.start_batch() == []


def test_a_failure_is_looked_at_again_until_quarantined(tmp_path: Path) -> None:
    with Journal(tmp_path / "two.sqlite", max_attempts=2) as strict:
        intake = make_intake(tmp_path, strict, FakeClock(), [])
        items = [ReadyFile(tmp_path / f"{name}.mrc", 1, 0) for name in "ab"]
        for item in items:
            strict.mark_processing(item.path, item.size, item.mtime_ns, HASH)
        intake.retry_alone(items)  # a batch of several failed: nobody is charged
        assert {strict.entry(item.path).state for item in items} == {"seen"}
        assert intake.pending == intake.solo == {item.path for item in items}
        intake.pending.clear()
        item = items[0]
        assert intake.fail(item, "boom") == "failed"
        assert intake.pending == {item.path}
        intake.pending.clear()
        assert intake.fail(item, "boom") == "quarantined"
        assert not intake.pending and intake.solo == {items[1].path}


def test_retried_micrographs_come_back_from_the_journal(tmp_path: Path, journal: Journal) -> None:
    clock = FakeClock()
    intake = make_intake(tmp_path, journal, clock, [])
    path = write_mrc(tmp_path / "a.mrc")
    stat = path.stat()
    journal.mark_seen(path, stat.st_size, stat.st_mtime_ns, HASH)
    journal.quarantine(path, "No space left on device")
    intake.offer_retried()
    assert not intake.pending  # quarantined: nothing waits
    assert journal.retry() == 1  # `streamdenoise quarantine --retry`
    intake.offer_retried()
    assert not intake.pending  # looked less than recheck_interval ago
    clock.now += 5.0
    intake.offer_retried()
    assert intake.pending == {path}
    clock.now += 1.0
    intake.check_pending()
    clock.now += 1.0
    intake.check_pending()
    assert list(intake.ready) == [path]
    clock.now += 5.0
    intake.offer_retried()
    assert not intake.pending  # already queued
