"""Strict MRC micrograph reading and atomic writing.

Every failure raises `MicrographError` (a ValueError) naming the file and the reason; a
library exception never escapes bare (it is chained as the cause). `expected_mrc_size`
reads only the 1024-byte header, so the live daemon can cheaply tell whether a file has
been written completely.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import numpy.typing as npt

from streamdenoise.errors import MicrographError
from streamdenoise.io.atomic import atomic_output

HEADER_BYTES = 1024
MAX_SIDE = 1_000_000
"""Largest plausible nx or ny (pixels); larger values mean the header is garbage."""
MODE_DTYPES: dict[int, np.dtype] = {
    0: np.dtype(np.int8),
    1: np.dtype(np.int16),
    2: np.dtype(np.float32),
    6: np.dtype(np.uint16),
    12: np.dtype(np.float16),
}
"""MRC modes accepted for micrographs and their element types."""
WRITE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


@dataclass(frozen=True)
class Micrograph:
    """A micrograph in memory: `data` float32 (ny, nx); `pixel_size` Å/px; its source file."""

    data: np.ndarray
    pixel_size: float
    path: Path | None = None


def _os_error(path: Path, error: OSError) -> MicrographError:
    """The MicrographError for an OS error on `path` (raise it `from error`)."""
    if isinstance(error, FileNotFoundError):
        return MicrographError(path, "no such file")
    if isinstance(error, PermissionError):
        return MicrographError(path, "cannot read: permission denied")
    return MicrographError(path, f"cannot read: {error.strerror or error}")


def _byte_order(path: Path, header: bytes) -> str:
    """'<' or '>' from the machine stamp (bytes 212-213), as mrcfile decides it."""
    stamp = header[212:214]
    if stamp[0] == 0x44 and stamp[1] in (0x44, 0x41):
        return "<"
    if stamp == b"\x11\x11":
        return ">"
    raise MicrographError(
        path, f"unrecognised machine stamp 0x{stamp[0]:02x} 0x{stamp[1]:02x} (byte order unknown)"
    )


def _header_fields(path: Path, header: bytes) -> tuple[int, int, int, int, int]:
    """(nx, ny, nz, mode, nsymbt) from a 1024-byte header."""
    if header[208:212] != b"MAP ":
        raise MicrographError(path, "not an MRC file (no 'MAP ' id in the header)")
    order = _byte_order(path, header)
    nx, ny, nz, mode = (int(v) for v in np.frombuffer(header, f"{order}i4", count=4))
    nsymbt = int(np.frombuffer(header, f"{order}i4", count=1, offset=92)[0])
    if min(nx, ny, nz) <= 0 or max(nx, ny) > MAX_SIDE or nsymbt < 0:
        raise MicrographError(
            path,
            f"not an MRC file (bad dimensions {nx}×{ny}×{nz}, extended header {nsymbt} bytes)",
        )
    return nx, ny, nz, mode, nsymbt


def expected_mrc_size(path: str | Path) -> int:
    """Bytes the MRC file at `path` must have according to its header alone.

    1024 + nsymbt (extended header) + nx·ny·nz·itemsize. Raises MicrographError for a
    missing, unreadable, empty, short (< 1024 bytes), non-MRC or unsupported-mode file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            header = handle.read(HEADER_BYTES)
    except OSError as error:
        raise _os_error(path, error) from error
    if not header:
        raise MicrographError(path, "empty file (0 bytes)")
    if len(header) < HEADER_BYTES:
        raise MicrographError(
            path, f"truncated: {len(header):,} bytes, shorter than the {HEADER_BYTES:,}-byte header"
        )
    nx, ny, nz, mode, nsymbt = _header_fields(path, header)
    if mode not in MODE_DTYPES:
        raise MicrographError(path, f"unsupported MRC mode {mode} (accepted: 0, 1, 2, 6, 12)")
    return HEADER_BYTES + nsymbt + nx * ny * nz * MODE_DTYPES[mode].itemsize


def _checked_pixel_size(path: Path, given: float | None, header: float) -> float:
    """The caller's pixel size (Å/px) if given, else the header's; both must be > 0."""
    if given is not None:
        if not (math.isfinite(given) and given > 0):
            raise MicrographError(path, f"pixel size must be positive, got {given}")
        return float(given)
    if not (math.isfinite(header) and header > 0):
        raise MicrographError(
            path, "no pixel size in the header; give the input pixel size (--input-pixel-size)"
        )
    return header


def read_mrc(path: str | Path, pixel_size: float | None = None) -> Micrograph:
    """Read one micrograph strictly, as float32 (ny, nx).

    Accepts a 2-D image or a single-section volume in mode 0, 1, 2, 6 or 12, exactly as
    long as its header says, all values finite. `pixel_size` (Å/px) overrides the header's;
    one of the two must be positive.
    """
    path = Path(path)
    expected = expected_mrc_size(path)
    try:
        actual = path.stat().st_size
    except OSError as error:
        raise _os_error(path, error) from error
    if actual < expected:
        raise MicrographError(path, f"truncated: {actual:,} of {expected:,} bytes")
    if actual > expected:
        raise MicrographError(
            path, f"size mismatch: {actual:,} bytes but the header implies {expected:,}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mrcfile warns on odd headers; judged below
            with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
                data = np.array(mrc.data, dtype=np.float32)  # a copy, outliving the map
                header_pixel = float(mrc.voxel_size.x)
    except OSError as error:
        raise _os_error(path, error) from error
    except (ValueError, EOFError, AttributeError, TypeError) as error:
        raise MicrographError(path, f"invalid MRC file: {error}") from error
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise MicrographError(
                path, f"is a stack of {data.shape[0]:,} sections, expected one micrograph"
            )
        data = data[0]
    if data.ndim != 2:
        raise MicrographError(path, f"expected a 2-D image, got shape {data.shape}")
    non_finite = int(data.size - np.count_nonzero(np.isfinite(data)))
    if non_finite:
        raise MicrographError(path, f"contains {non_finite:,} non-finite values (NaN/Inf)")
    return Micrograph(data, _checked_pixel_size(path, pixel_size, header_pixel), path)


MAX_LABELS = 9
"""Labels a writer may add: the header holds ten, and mrcfile uses the first."""


def write_mrc_atomic(
    path: str | Path,
    data: np.ndarray,
    pixel_size: float,
    dtype: npt.DTypeLike = np.float32,
    labels: Sequence[str] = (),
) -> None:
    """Write a 2-D image (ny, nx) as MRC mode 2 (float32) or 12 (float16), atomically.

    The header gets `pixel_size` (Å/px), the data statistics (see `_set_header_stats`:
    float16 files leave rms undetermined) and up to nine `labels`
    (what made the file; ASCII, cut to 80 characters); parent directories are created.
    Raises ValueError for another dtype, a non-2-D or non-finite image, values beyond the
    float16 range, or a pixel size that is not positive.
    """
    dtype = np.dtype(dtype)
    if dtype not in WRITE_DTYPES:
        raise ValueError(f"write float32 or float16 micrographs, not {dtype}")
    image = np.asarray(data)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel size must be positive, got {pixel_size}")
    if not np.all(np.isfinite(image)):
        raise ValueError("refusing to write non-finite values (NaN/Inf)")
    if image.size and float(np.max(np.abs(image))) > float(np.finfo(dtype).max):
        raise ValueError(f"values exceed the {dtype} range")
    stored = image.astype(dtype, copy=False)
    with atomic_output(path) as temporary, mrcfile.new(temporary, overwrite=True) as mrc:
        mrc.set_data(stored)
        mrc.voxel_size = float(pixel_size)
        for label in list(labels)[:MAX_LABELS]:
            mrc.add_label(label.encode("ascii", "replace").decode()[:80])
        _set_header_stats(mrc.header, stored)


def _set_header_stats(header: np.recarray, stored: np.ndarray) -> None:
    """Header dmin, dmax, dmean (computed in float64) and rms of the stored values.

    For float16 (mode 12) rms is -1, MRC2014's "not determined": readers that check it
    (mrcfile.validate) recompute the standard deviation in float16, which overflows for
    any micrograph (sums beyond 65504), so a true value would make them reject the file.
    """
    values = stored.astype(np.float64, copy=False)
    header.dmin = values.min() if values.size else 0.0
    header.dmax = values.max() if values.size else 0.0
    header.dmean = values.mean() if values.size else 0.0
    header.rms = -1.0 if stored.dtype == np.float16 else (values.std() if values.size else 0.0)
