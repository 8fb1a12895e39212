"""Watching an acquisition directory: discovery of new files, file completeness, journal."""

from __future__ import annotations

from streamdenoise.watch.completeness import Completeness, CompletenessTracker
from streamdenoise.watch.discovery import (
    Discovery,
    filesystem_type,
    is_ignored,
    is_network_filesystem,
    matches,
)
from streamdenoise.watch.journal import Journal, JournalEntry, JournalError, params_hash

__all__ = [
    "Completeness",
    "CompletenessTracker",
    "Discovery",
    "Journal",
    "JournalEntry",
    "JournalError",
    "filesystem_type",
    "is_ignored",
    "is_network_filesystem",
    "matches",
    "params_hash",
]
