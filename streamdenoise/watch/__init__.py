"""Watching an acquisition directory: discovery of new files, readiness, processing journal."""

from __future__ import annotations

from streamdenoise.watch.discovery import (
    Discovery,
    filesystem_type,
    is_ignored,
    is_network_filesystem,
    matches,
)
from streamdenoise.watch.journal import Journal, JournalEntry, JournalError, params_hash
from streamdenoise.watch.readiness import Readiness, ReadinessTracker

__all__ = [
    "Discovery",
    "Journal",
    "JournalEntry",
    "JournalError",
    "Readiness",
    "ReadinessTracker",
    "filesystem_type",
    "is_ignored",
    "is_network_filesystem",
    "matches",
    "params_hash",
]
