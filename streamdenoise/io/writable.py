"""Checks that an output folder or file can be written, before long work starts."""

from __future__ import annotations

import os
from pathlib import Path


def writable_folder(path: Path, option: str) -> Path:
    """Create `path` (parents too) and check it is a writable folder; ValueError naming
    it and the option otherwise (a file, a read-only place, /proc …)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: not a folder (give a folder for {option})")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{path}: cannot create it ({error.strerror}); check {option}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot write there (permission denied); check {option}")
    return path


def writable_file(path: Path, option: str) -> Path:
    """Check that the file `path` can be written (its folder is created); ValueError
    naming it and the option otherwise, so long jobs fail before they start."""
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give a file name for {option}")
    if path.exists() and not path.is_file():
        raise ValueError(f"{path}: not a regular file (a device or pipe); give a file for {option}")
    writable_folder(path.parent, option)
    return path
