"""Intake: from the files discovery offers to batches of complete micrographs to process.

An offered file waits as pending until the completeness tracker decides. One the journal
has done (or quarantined) with these parameters is dropped; a complete one is marked
`seen` and queued as ready; an invalid one is quarantined. Batches leave the ready queue
in the configured order, marked `processing`. The micrographs of a batch of several that
failed are charged nothing and retried one per batch, so one that breaks every batch it is
in cannot use up the attempts of the others. Not thread-safe: call from one thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from streamdenoise.watch.completeness import CompletenessTracker
from streamdenoise.watch.journal import Journal


@dataclass
class ReadyFile:
    """A complete micrograph waiting for the model: its path, size (bytes), mtime (ns)."""

    path: Path
    size: int
    mtime_ns: int


class Intake:
    """Pending, ready and failed-batch bookkeeping between discovery and the pipeline.

    `order`: "oldest", "newest" or "alternate" (by mtime); `max_batch`: micrographs per
    batch; `recheck_interval`: seconds between looks at the journal for micrographs sent
    back by `quarantine --retry`; `on_quarantined(path, reason)` hears of every file found
    invalid; `clock` gives monotonic seconds.
    """

    def __init__(
        self,
        journal: Journal,
        tracker: CompletenessTracker,
        params_hash: str,
        *,
        order: str,
        max_batch: int,
        recheck_interval: float,
        on_quarantined: Callable[[Path, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.tracker = tracker
        self.params_hash = params_hash
        self.order = order
        self.max_batch = max_batch
        self.recheck_interval = recheck_interval
        self.on_quarantined = on_quarantined
        self.clock = clock
        self._next_recheck = 0.0
        self.pending: set[Path] = set()
        self.ready: dict[Path, ReadyFile] = {}
        self.found: set[Path] = set()
        self.solo: set[Path] = set()  # in a batch that failed: retried one per batch
        self._alternate = False

    def offer(self, paths: Iterable[Path]) -> None:
        """Look at `paths` (from discovery) from now on."""
        self.pending.update(paths)

    def offer_retried(self) -> None:
        """Look again at what the journal has waiting (sent back by `quarantine --retry`:
        rescans hand out new names only), at most every `recheck_interval` s."""
        now = self.clock()
        if now >= self._next_recheck:
            self._next_recheck = now + self.recheck_interval
            self.pending.update(path for path in self.journal.waiting() if path not in self.ready)

    def check_pending(self) -> None:
        """Drop what is gone or done, queue what is complete, quarantine what is invalid."""
        for path in list(self.pending):
            try:
                stat = path.stat()
            except FileNotFoundError:
                self._drop(path)
                continue
            except OSError:
                continue  # a network hiccup: look again next tick
            if not self.journal.needs_processing(
                path, stat.st_size, stat.st_mtime_ns, self.params_hash
            ):
                self._drop(path)
                continue
            completeness = self.tracker.check(path)
            if completeness.state == "pending":
                continue
            self._drop(path)
            if completeness.state in ("ready", "invalid"):
                self.found.add(path)
                self.journal.mark_seen(
                    path, completeness.size, completeness.mtime_ns, self.params_hash
                )
            if completeness.state == "ready":
                self.ready[path] = ReadyFile(path, completeness.size, completeness.mtime_ns)
            elif completeness.state == "invalid":
                reason = completeness.reason or "invalid"
                self.journal.quarantine(path, reason)
                self.on_quarantined(path, completeness.reason)

    def _drop(self, path: Path) -> None:
        self.pending.discard(path)
        self.tracker.forget(path)

    def next_batch(self) -> list[ReadyFile]:
        """The next micrographs in the configured order, at most `max_batch`; one alone
        when it comes first and was in a batch that failed."""
        items = sorted(self.ready.values(), key=lambda r: r.mtime_ns)
        if self.order == "newest" or (self.order == "alternate" and self._alternate):
            items.reverse()
        self._alternate = not self._alternate
        if items and items[0].path in self.solo:
            batch = items[:1]
        else:
            batch = [i for i in items if i.path not in self.solo][: self.max_batch]
        for item in batch:
            del self.ready[item.path]
        return batch

    def start_batch(self) -> list[ReadyFile]:
        """The next batch, marked `processing` in the journal."""
        batch = self.next_batch()
        for item in batch:
            self.journal.mark_processing(item.path, item.size, item.mtime_ns, self.params_hash)
        return batch

    def done(self, item: ReadyFile) -> None:
        """`item` was written (the journal has it as done)."""
        self.solo.discard(item.path)

    def retry_alone(self, items: list[ReadyFile]) -> None:
        """The micrographs of a batch of several that failed: charged nothing, pending
        again (`seen` in the journal) and retried one per batch."""
        self.solo.update(item.path for item in items)
        self.release(items)
        self.pending.update(item.path for item in items)

    def fail(self, item: ReadyFile, reason: str) -> str:
        """Charge one attempt to `item`; returns its journal state ("failed": it is looked
        at again, or "quarantined")."""
        state = self.journal.mark_failed(item.path, reason)
        if state == "quarantined":
            self.solo.discard(item.path)
        else:
            self.pending.add(item.path)
        return state

    def release(self, items: Iterable[ReadyFile]) -> None:
        """Micrographs the model stage did not start before a stop: pending, no try used."""
        for item in items:
            self.journal.release(item.path)

    def drop_unstarted(self) -> None:
        """Forget the ready queue: its micrographs stay `seen`, done on the next start."""
        self.ready.clear()
