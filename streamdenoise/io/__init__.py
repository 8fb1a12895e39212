"""Micrograph I/O at the edges: strict reading, atomic writing."""

from __future__ import annotations

from pathlib import Path

from streamdenoise.errors import MicrographError
from streamdenoise.io.atomic import atomic_output, atomic_write_bytes, atomic_write_text
from streamdenoise.io.mrc import Micrograph, expected_mrc_size, read_mrc, write_mrc_atomic
from streamdenoise.io.star import read_star, write_star_atomic
from streamdenoise.io.tiff import read_tiff

MRC_SUFFIXES = (".mrc", ".map")
TIFF_SUFFIXES = (".tif", ".tiff")


def read_micrograph(path: str | Path, pixel_size: float | None = None) -> Micrograph:
    """Read an MRC or TIFF micrograph by its suffix; `pixel_size` (Å/px) overrides the
    header (MRC) and is required for TIFF."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in MRC_SUFFIXES:
        return read_mrc(path, pixel_size)
    if suffix in TIFF_SUFFIXES:
        return read_tiff(path, pixel_size)
    raise MicrographError(path, f"unsupported file type {suffix!r} (expected .mrc or .tif)")


__all__ = [
    "Micrograph",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "expected_mrc_size",
    "read_micrograph",
    "read_mrc",
    "read_star",
    "read_tiff",
    "write_mrc_atomic",
    "write_star_atomic",
]
