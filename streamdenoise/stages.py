"""The daemon's pipeline: reader pool → model stage → writer pool, joined by bounded queues.

The caller is the intake (the daemon's loop: discovery, completeness, journal check). It
`submit`s batches while `has_room()` (at most `read_ahead` batches reading or read), and
calls `step`, which runs the model stage, in the caller's thread, on the oldest batch once
its reads are done and hands each result to the writer pool. The model stage never waits
for a write: it only waits for room when `max_writes` writes are queued or running
(back-pressure from slow writers), so a model stage of M s and writers of W s per item
give one item per max(M, W) s, not per M + W.

Failures are charged where they happen: a read or a write to its one item, a model failure
to each item of the batch once. Finished writes and failures are reported to the callbacks
in the thread that calls `step`, `poll` or `drain`, so the caller's state needs no lock;
only `Stages.read` and `Stages.write` run on the pools' threads.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

Item = TypeVar("Item")
Read = TypeVar("Read")
Out = TypeVar("Out")
Written = TypeVar("Written")
Stage = Literal["read", "model", "write"]


@dataclass(frozen=True)
class Stages(Generic[Item, Read, Out, Written]):
    """The pipeline's collaborators.

    read(item) → Read, on a reader thread (raising fails that item);
    model(reads) → one Out per read, in the caller's thread (raising fails the batch);
    write(item, read, out, seconds) → Written, on a writer thread (raising fails that
    item); `seconds` is the model stage's time per item of its batch;
    done(item, written): a write finished;
    failed(items, stage, error): the items a failure is charged to;
    released(items): read-ahead items the model stage never started (see `drain`).
    """

    read: Callable[[Item], Read]
    model: Callable[[list[Read]], Sequence[Out]]
    write: Callable[[Item, Read, Out, float], Written]
    done: Callable[[Item, Written], None]
    failed: Callable[[list[Item], Stage, BaseException], None]
    released: Callable[[list[Item]], None]


class Pipeline(Generic[Item, Read, Out, Written]):
    """Reader pool → model stage → writer pool (see the module's docstring). `clock` gives
    seconds (the model stage's timing)."""

    def __init__(
        self,
        stages: Stages[Item, Read, Out, Written],
        *,
        readers: int = 2,
        writers: int = 2,
        read_ahead: int = 2,
        max_writes: int = 4,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if min(readers, writers, read_ahead, max_writes) < 1:
            raise ValueError("readers, writers, read_ahead and max_writes must be ≥ 1")
        self.stages = stages
        self.read_ahead = read_ahead
        self.max_writes = max_writes
        self.clock = clock
        self.model_seconds = 0.0
        """Time the model stage spent in `stages.model` (s), for its utilisation."""
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="streamdenoise-read")
        self._writers = ThreadPoolExecutor(writers, thread_name_prefix="streamdenoise-write")
        self._batches: deque[list[tuple[Item, Future[Read]]]] = deque()
        self._writes: dict[Future[Written], Item] = {}

    def has_room(self) -> bool:
        """Whether intake may `submit` another batch."""
        return len(self._batches) < self.read_ahead

    @property
    def busy(self) -> bool:
        """Whether any batch is reading or waiting for the model, or any write is queued."""
        return bool(self._batches or self._writes)

    @property
    def writes_in_flight(self) -> int:
        """Writes queued or running (at most `max_writes`)."""
        return len(self._writes)

    def submit(self, items: Sequence[Item]) -> None:
        """Start reading a batch (intake's back-pressure: only while `has_room()`)."""
        if not self.has_room():
            raise RuntimeError("the pipeline is full: wait for has_room()")
        self._batches.append(
            [(item, self._readers.submit(self.stages.read, item)) for item in items]
        )

    def step(self, timeout: float | None) -> bool:
        """Report finished writes; then, if the oldest batch's reads end within `timeout`
        seconds (None: wait), run the model stage on it and queue its writes (with no batch
        to read, wait as long for a write instead). Returns whether a batch left the read
        queue."""
        self.poll()
        if not self._batches:
            if self._writes:
                wait(list(self._writes), timeout=timeout, return_when=FIRST_COMPLETED)
                self.poll()
            return False
        batch = self._batches[0]
        _, reading = wait([future for _, future in batch], timeout=timeout)
        if reading:
            return False
        self._batches.popleft()
        good: list[tuple[Item, Read]] = []
        for item, future in batch:
            error = future.exception()
            if error is None:
                good.append((item, future.result()))
            else:
                self.stages.failed([item], "read", error)
        if good:
            self._model_stage(good)
        return True

    def _model_stage(self, batch: list[tuple[Item, Read]]) -> None:
        start = self.clock()
        try:
            outputs = self.stages.model([read for _, read in batch])
        except Exception as error:  # e.g. out of memory, a compiler that failed or was killed
            self.stages.failed([item for item, _ in batch], "model", error)
            return
        seconds = self.clock() - start
        self.model_seconds += seconds
        for (item, read), out in zip(batch, outputs, strict=True):
            self._wait_for_room()
            future = self._writers.submit(self.stages.write, item, read, out, seconds / len(batch))
            self._writes[future] = item

    def _wait_for_room(self) -> None:
        """Back-pressure: wait while `max_writes` writes are queued or running."""
        while len(self._writes) >= self.max_writes:
            wait(list(self._writes), return_when=FIRST_COMPLETED)
            self.poll()

    def poll(self) -> None:
        """Report each finished write to `done`, or its error to `failed`."""
        for future in [future for future in self._writes if future.done()]:
            item = self._writes.pop(future)
            error = future.exception()
            if error is None:
                self.stages.done(item, future.result())
            else:
                self.stages.failed([item], "write", error)

    def drain(self) -> None:
        """Finish what is in flight: release the read-ahead batches the model stage has
        not started (once their reads end) and wait for, and report, every write."""
        while self._batches:
            batch = self._batches.popleft()
            wait([future for _, future in batch])
            self.stages.released([item for item, _ in batch])
        wait(list(self._writes))
        self.poll()

    def shutdown(self) -> None:
        """End the pools' threads (after `drain`, or on an error: queued work is dropped
        unreported)."""
        self._readers.shutdown(wait=True, cancel_futures=True)
        self._writers.shutdown(wait=True, cancel_futures=True)
