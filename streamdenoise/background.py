"""Work beside the live denoising: daemon threads at a lower scheduling priority."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

BACKGROUND_NICENESS = 10
"""Added to a background thread's nice value: the live denoising keeps the CPU first."""


def start_in_background(name: str, work: Callable[[], None]) -> threading.Thread:
    """Run `work()` in a daemon thread called `name` at a lower priority; returns it."""

    def run() -> None:
        lower_this_threads_priority()
        work()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def lower_this_threads_priority() -> None:
    """Lower the calling thread's scheduling priority (Linux: nice is per thread, and the
    thread pools it starts inherit it); elsewhere, or without permission, do nothing."""
    try:
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICENESS
        os.setpriority(os.PRIO_PROCESS, thread, niceness)
    except (AttributeError, OSError) as error:
        log.debug("background work runs at the daemon's priority: %s", error)
