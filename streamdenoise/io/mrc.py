"""Strict MRC micrograph reading and atomic writing.

Every failure raises `MicrographError` (a ValueError) naming the file and the reason; a
library exception never escapes bare. `expected_mrc_size` reads only the header, so the
live daemon can cheaply tell whether a file has been written completely.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from streamdenoise.errors import MicrographError
from streamdenoise.io.atomic import atomic_output

HEADER_BYTES = 1024
MODE_DTYPES: dict[int, np.dtype] = {
    0: np.dtype(np.int8),
    1: np.dtype(np.int16),
    2: np.dtype(np.float32),
    6: np.dtype(np.uint16),
    12: np.dtype(np.float16),
}
"""MRC modes accepted for micrographs and their element types."""


@dataclass(frozen=True)
class Micrograph:
    """A micrograph in memory: data float32 (ny, nx); pixel_size in Å/px; its source file."""

    data: np.ndarray
    pixel_size: float
    path: Path | None = None


def _header_fields(path: Path, header: bytes) -> tuple[int, int, int, int, int]:
    """(nx, ny, nz, mode, nsymbt) from a 1024-byte header, either byte order."""
    if header[208:212] != b"MAP ":
        raise MicrographError(path, "not an MRC file (no 'MAP ' id in the header)")
    machine_stamp = header[212]
    order = ">" if machine_stamp == 0x11 else "<"
    nx, ny, nz, mode = np.frombuffer(header[:16], dtype=f"{order}i4")
    nsymbt = int(np.frombuffer(header[92:96], dtype=f"{order}i4")[0])
    if min(nx, ny, nz) <= 0 or nsymbt < 0 or max(nx, ny) > 1_000_000:
        raise MicrographError(
            path, f"not an MRC file (bad dimensions {nx}×{ny}×{nz}, extended header {nsymbt})"
        )
    return int(nx), int(ny), int(nz), int(mode), nsymbt


def expected_mrc_size(path: str | Path) -> int:
    """Bytes the MRC file at `path` must have according to its header.

    1024 + extended header + nx·ny·nz·itemsize. Raises MicrographError for a missing,
    empty, short, non-MRC or unsupported-mode file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            header = handle.read(HEADER_BYTES)
    except FileNotFoundError as error:
        raise MicrographError(path, "no such file") from error
    except PermissionError as error:
        raise MicrographError(path, "cannot read: permission denied") from error
    except OSError as error:
        raise MicrographError(path, f"cannot read: {error.strerror or error}") from error
    if not header:
        raise MicrographError(path, "empty file (0 bytes)")
    if len(header) < HEADER_BYTES:
        raise MicrographError(
            path, f"truncated: {len(header):,} bytes, shorter than the {HEADER_BYTES}-byte header"
        )
    nx, ny, nz, mode, nsymbt = _header_fields(path, header)
    if mode not in MODE_DTYPES:
        raise MicrographError(path, f"unsupported MRC mode {mode} (accepted: 0, 1, 2, 6, 12)")
    return HEADER_BYTES + nsymbt + nx * ny * nz * MODE_DTYPES[mode].itemsize


def read_mrc(path: str | Path, pixel_size: float | None = None) -> Micrograph:
    """Read a micrograph strictly: one 2-D image (or a single-section volume) in mode 0, 1,
    2, 6 or 12, complete, finite, with a pixel size (from the header, or `pixel_size` in Å,
    which overrides it). Returns float32 data (ny, nx)."""
    path = Path(path)
    expected = expected_mrc_size(path)
    actual = path.stat().st_size
    if actual < expected:
        raise MicrographError(path, f"truncated: {actual:,} of {expected:,} bytes")
    if actual > expected:
        raise MicrographError(
            path, f"size mismatch: {actual:,} bytes but the header implies {expected:,}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mrcfile warns on odd headers; we judge below
            with mrcfile.open(path, mode="r", permissive=False) as mrc:
                data = np.asarray(mrc.data)
                header_pixel = float(mrc.voxel_size.x)
                data = data.astype(np.float32, copy=True)
    except (ValueError, OSError, EOFError, AttributeError, TypeError) as error:
        raise MicrographError(path, f"invalid MRC file: {error}") from error
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise MicrographError(
                path, f"is a stack of {data.shape[0]} sections, expected one micrograph"
            )
        data = data[0]
    if data.ndim != 2:
        raise MicrographError(path, f"expected a 2-D image, got shape {data.shape}")
    non_finite = int(np.count_nonzero(~np.isfinite(data)))
    if non_finite:
        raise MicrographError(path, f"contains {non_finite:,} non-finite values (NaN/Inf)")
    if pixel_size is None:
        if not header_pixel > 0:
            raise MicrographError(path, "no pixel size in the header; give one (--pixel-size)")
        pixel_size = header_pixel
    elif not pixel_size > 0:
        raise MicrographError(path, f"pixel size must be positive, got {pixel_size}")
    return Micrograph(data=data, pixel_size=float(pixel_size), path=path)


def write_mrc_atomic(
    path: str | Path, data: np.ndarray, pixel_size: float, dtype=np.float32
) -> None:
    """Write a 2-D image as MRC (mode 2 float32 or mode 12 float16) atomically, with
    `pixel_size` Å/px in the header and its statistics updated."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError(f"write float32 or float16 micrographs, not {dtype}")
    array = np.asarray(data)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {array.shape}")
    if not pixel_size > 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size}")
    with atomic_output(path) as temporary, mrcfile.new(temporary, overwrite=True) as mrc:
        mrc.set_data(array.astype(dtype, copy=False))
        mrc.voxel_size = float(pixel_size)
        mrc.update_header_stats()
