"""Atomic file output: write a hidden temporary beside the target, fsync, rename.

Every file streamdenoise writes goes through `atomic_output`, so a reader (a person, a
pipeline watching the output folder) sees either the old file or the whole new one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from streamdenoise.errors import OutputError


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable; a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside `path`; on success it replaces `path`.

    The caller writes the temporary (`.<name>.<random>.tmp`, same directory, so the rename
    stays on one filesystem). On leaving the block it is fsynced, renamed onto `path` with
    `os.replace` and the directory fsynced. On an exception the temporary is removed and
    `path` is left as it was. Parent directories are created. A `path` that exists and is
    not a regular file (a folder, a device such as /dev/null, a pipe) is refused with
    OutputError (an OSError and a ValueError): renaming onto it would replace it.
    """
    target = Path(path)
    if target.exists() and not target.is_file():
        raise OutputError(target, "exists and is not a regular file; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _fsync_directory(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
