"""Fakes shared by the unit tests (never what an issue delivers)."""

from __future__ import annotations


class FakeClock:
    """A clock under test control: returns `now` (seconds), which the test moves."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
