"""The daemon's pipeline (`streamdenoise.stages`) in-process, with sleep-based fake stages:
throughput set by the slowest stage, back-pressure, failures charged where they happen,
and the drain."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from streamdenoise.stages import Pipeline, Stage, Stages


class Recorder:
    """Fake stages: reads take `read_s`, the model `model_s` per item, writes `write_s`;
    items in `bad_reads` / `bad_writes` raise there; `bad_model` fails any batch holding
    one of its items."""

    def __init__(
        self,
        *,
        read_s: float = 0.0,
        model_s: float = 0.0,
        write_s: float = 0.0,
        bad_reads: frozenset[int] = frozenset(),
        bad_writes: frozenset[int] = frozenset(),
        bad_model: frozenset[int] = frozenset(),
    ) -> None:
        self.read_s, self.model_s, self.write_s = read_s, model_s, write_s
        self.bad_reads, self.bad_writes, self.bad_model = bad_reads, bad_writes, bad_model
        self.done: list[int] = []
        self.failed: list[tuple[Stage, list[int]]] = []
        self.released: list[int] = []
        self.batches: list[list[int]] = []
        self.writing = 0
        self.most_writing = 0
        self._lock = threading.Lock()

    def read(self, item: int) -> int:
        time.sleep(self.read_s)
        if item in self.bad_reads:
            raise OSError(f"cannot read {item}")
        return item

    def model(self, reads: list[int]) -> Sequence[int]:
        self.batches.append(list(reads))
        time.sleep(self.model_s * len(reads))
        if self.bad_model.intersection(reads):
            raise RuntimeError("out of memory")
        return [10 * r for r in reads]

    def write(self, item: int, read: int, out: int, seconds: float) -> int:
        assert out == 10 * read == 10 * item and seconds >= 0
        with self._lock:
            self.writing += 1
            self.most_writing = max(self.most_writing, self.writing)
        try:
            time.sleep(self.write_s)
            if item in self.bad_writes:
                raise OSError("disk full")
            return out
        finally:
            with self._lock:
                self.writing -= 1

    def stages(self) -> Stages[int, int, int, int]:
        return Stages(
            read=self.read,
            model=self.model,
            write=self.write,
            done=lambda item, written: self.done.append(item),
            failed=lambda items, stage, error: self.failed.append((stage, items)),
            released=self.released.extend,
        )


def run_all(
    pipeline: Pipeline, items: list[int], batch: int = 1, *, until: Callable[[], bool] | None = None
) -> float:
    """Feed `items` in batches as the daemon's intake does (while there is room), step
    until everything is through (or `until()`), drain; returns the wall time (s)."""
    start = time.perf_counter()
    queue = list(items)
    while queue or pipeline.busy:
        if until is not None and until():
            break
        while queue and pipeline.has_room():
            pipeline.submit(queue[:batch])
            del queue[:batch]
        pipeline.step(timeout=0.05)
    pipeline.drain()
    pipeline.shutdown()
    return time.perf_counter() - start


@pytest.mark.parametrize(("model_s", "write_s"), [(0.04, 0.04), (0.02, 0.05)])
def test_throughput_is_set_by_the_slowest_stage_not_the_sum(model_s: float, write_s: float) -> None:
    """A model stage of M ms and one writer of W ms per item, 40 items: one item per
    max(M, W) within 15 %, where waiting for each write would give one per M + W."""
    fake = Recorder(model_s=model_s, write_s=write_s)
    n = 40
    seconds = run_all(Pipeline(fake.stages(), readers=1, writers=1), list(range(n)))
    assert sorted(fake.done) == list(range(n)) and not fake.failed
    ideal = n * max(model_s, write_s)
    serial = n * (model_s + write_s)
    assert seconds <= ideal / 0.85, (seconds, ideal, serial)  # ≥ 85 % of 1/max(M, W)
    assert seconds < serial * 0.8


def test_slow_writers_hold_the_model_stage_back_by_a_bounded_queue() -> None:
    fake = Recorder(model_s=0.005, write_s=0.03)
    pipeline = Pipeline(fake.stages(), readers=1, writers=2, max_writes=3)
    seconds = run_all(pipeline, list(range(30)))
    assert sorted(fake.done) == list(range(30))
    assert fake.most_writing <= 2  # the writer pool's size
    assert seconds >= 30 * 0.03 / 2 * 0.9  # the writers set the pace


def test_a_write_failure_is_charged_to_its_micrograph_only() -> None:
    fake = Recorder(
        model_s=0.002, write_s=0.002, bad_writes=frozenset({3}), bad_reads=frozenset({5})
    )
    run_all(Pipeline(fake.stages()), list(range(8)), batch=4)
    assert sorted(fake.failed) == [("read", [5]), ("write", [3])]
    assert sorted(fake.done) == [0, 1, 2, 4, 6, 7]


def test_a_model_failure_is_charged_once_to_each_micrograph_of_its_batch() -> None:
    fake = Recorder(bad_model=frozenset({2}))
    run_all(Pipeline(fake.stages()), list(range(8)), batch=4)
    assert fake.failed == [("model", [0, 1, 2, 3])]  # once, the batch's items
    assert sorted(fake.done) == [4, 5, 6, 7]


def test_drain_releases_unstarted_batches_and_finishes_every_write() -> None:
    fake = Recorder(model_s=0.02, write_s=0.05)
    pipeline = Pipeline(fake.stages(), read_ahead=2)
    run_all(pipeline, list(range(20)), batch=2, until=lambda: len(fake.batches) >= 2)
    started = [item for batch in fake.batches for item in batch]
    assert sorted(fake.done) == sorted(started)  # every started micrograph written
    assert fake.released and not set(fake.released) & set(started)  # read-ahead: pending
    assert not pipeline.busy


def test_a_failed_batch_charges_nobody_and_retries_its_micrographs_alone(
    tmp_path: Path,
) -> None:
    from streamdenoise.config import load_settings
    from streamdenoise.daemon import Daemon
    from streamdenoise.sdnotify import Notifier
    from streamdenoise.watch import CompletenessTracker, Journal
    from streamdenoise.watch.intake import Intake, ReadyFile

    settings = load_settings(None, {"watch_dir": tmp_path / "in", "out_dir": tmp_path / "out"})
    daemon = Daemon(settings, notifier=Notifier(None))
    items = [ReadyFile(tmp_path / "in" / f"{name}.mrc", 1, k) for k, name in enumerate("abcd")]
    with Journal(tmp_path / "journal.sqlite") as journal:
        intake = daemon.intake = Intake(
            journal,
            CompletenessTracker(0.0, 1.0),
            "h",
            order="oldest",
            max_batch=4,
            recheck_interval=1.0,
            on_quarantined=lambda path, reason: None,
        )
        for item in items[:2]:
            journal.mark_processing(item.path, item.size, item.mtime_ns, "h")
        daemon._failed(items[:2], "model", RuntimeError("out of memory"))
        assert [journal.entry(i.path).attempts for i in items[:2]] == [0, 0]  # not charged
        assert all(journal.entry(i.path).state == "seen" for i in items[:2])
        assert intake.pending == {i.path for i in items[:2]}  # looked at again
        intake.ready = {item.path: item for item in items}
        batches = [intake.next_batch() for _ in range(3)]
        assert [[i.path.stem for i in b] for b in batches] == [["a"], ["b"], ["c", "d"]]
        journal.mark_processing(items[0].path, 1, 0, "h")
        daemon._failed(batches[0], "model", RuntimeError("NaN in the network"))
        assert journal.entry(items[0].path).attempts == 1  # alone, it is charged
        assert journal.entry(items[0].path).state == "failed"
        assert [s.state for s in daemon.status.recent] == ["failed"]
