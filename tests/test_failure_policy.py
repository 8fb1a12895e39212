"""The daemon's failure policy (`streamdenoise.daemon.charge_failure`), in-process: which
micrographs a failure is charged to, and which are retried or left pending."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdenoise.daemon import charge_failure
from streamdenoise.snapshot import MicrographSummary
from streamdenoise.watch.intake import ReadyFile


class _Intake:
    """Records what the policy asks of the intake; `fail` quarantines on the second try."""

    def __init__(self) -> None:
        self.released: list[ReadyFile] = []
        self.alone: list[ReadyFile] = []
        self.failures: dict[Path, int] = {}

    def release(self, items: list[ReadyFile]) -> None:
        self.released += items

    def retry_alone(self, items: list[ReadyFile]) -> None:
        self.alone += items

    def fail(self, item: ReadyFile, reason: str) -> str:
        self.failures[item.path] = self.failures.get(item.path, 0) + 1
        return "quarantined" if self.failures[item.path] > 1 else "failed"


class _Status:
    def __init__(self) -> None:
        self.remembered: list[MicrographSummary] = []

    def remember(self, summary: MicrographSummary) -> None:
        self.remembered.append(summary)


def _items(count: int) -> list[ReadyFile]:
    return [ReadyFile(Path(f"/data/mic_{i}.mrc"), 64, i) for i in range(count)]


def _charge(items: list[ReadyFile], stage: str, stopping: bool = False):
    intake, status = _Intake(), _Status()
    charge_failure(intake, status, items, stage, RuntimeError("boom"), stopping)  # type: ignore[arg-type]
    return intake, status


def test_a_model_failure_on_a_batch_charges_none_and_retries_each_alone() -> None:
    items = _items(3)
    intake, status = _charge(items, "model")
    assert intake.alone == items and not intake.failures and not status.remembered


def test_a_model_failure_on_one_micrograph_is_charged_to_it() -> None:
    items = _items(1)
    intake, status = _charge(items, "model")
    assert intake.failures == {items[0].path: 1} and not intake.alone
    assert [(s.name, s.state, s.error) for s in status.remembered] == [
        ("mic_0.mrc", "failed", "denoising failed: boom")
    ]


def test_a_model_failure_while_stopping_leaves_the_micrographs_pending() -> None:
    items = _items(2)
    intake, status = _charge(items, "model", stopping=True)
    assert intake.released == items and not intake.failures and not intake.alone
    assert not status.remembered


@pytest.mark.parametrize(
    ("stage", "reason"), [("read", "boom"), ("write", "cannot write outputs: boom")]
)
def test_a_read_or_write_failure_is_charged_to_its_micrograph(stage: str, reason: str) -> None:
    items = _items(1)
    intake, status = _charge(items, stage)
    assert intake.failures == {items[0].path: 1}
    assert [s.error for s in status.remembered] == [reason]
