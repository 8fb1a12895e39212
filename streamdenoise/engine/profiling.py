"""Where the time of one micrograph goes: named stages, recorded only when asked.

    with record_stages() as seconds:
        process_micrograph(...)
    seconds  # {"read": 0.41, "bin": 0.62, "model": 1.9, ...}

`stage(name)` costs two clock reads when nothing records (the daemon's normal case). The
recorder lives in a context variable, so it follows the calling thread (and asyncio task)
and concurrent micrographs on other threads do not mix into it. On CUDA the "model" stage
ends when the results are back on the host, so no extra synchronisation is needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_recorder: ContextVar[dict[str, float] | None] = ContextVar("streamdenoise_stages", default=None)


@contextmanager
def record_stages() -> Iterator[dict[str, float]]:
    """Collect {stage name: seconds} of every `stage` entered in this context (summed when a
    stage runs more than once)."""
    seconds: dict[str, float] = {}
    token = _recorder.set(seconds)
    try:
        yield seconds
    finally:
        _recorder.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the enclosed block as `name` when a `record_stages` context is active."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds = _recorder.get()
        if seconds is not None:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
