"""TIFF micrographs: a single 2-D page. TIFF resolution tags are not trusted for EM, so the
pixel size is always given by the caller."""

from __future__ import annotations

import logging
import math
import struct
from pathlib import Path

import numpy as np
import tifffile

from streamdenoise.errors import MicrographError
from streamdenoise.io.mrc import Micrograph

DECODE_ERRORS = (
    tifffile.TiffFileError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    NotImplementedError,
    struct.error,
)
"""What tifffile raises for a corrupt, truncated or undecodable file."""

MAX_IMAGE_BYTES = 4 * 2**30
"""The largest image a compressed TIFF may declare (a K3 super-resolution float32 frame
sum is 0.4 GiB): a corrupt size tag must not make the reader allocate tens of GiB."""

# tifffile logs what it finds wrong in a corrupt file; the MicrographError says it once.
# Without this handler, Python's last-resort handler prints those lines on stderr.
logging.getLogger("tifffile").addHandler(logging.NullHandler())


def read_tiff(path: str | Path, pixel_size: float | None) -> Micrograph:
    """Read a one-page TIFF micrograph as float32 (ny, nx) with `pixel_size` Å/px (> 0).

    A 3-D page with one plane is accepted; several pages, colour samples, complex or
    non-numeric data and NaN/Inf values are not.
    """
    path = Path(path)
    if pixel_size is None or not (math.isfinite(pixel_size) and pixel_size > 0):
        raise MicrographError(
            path, "TIFF micrographs need an input pixel size > 0 (--input-pixel-size)"
        )
    try:
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            if pages == 1:
                _check_declared_size(path, tif.pages[0])
            data = tif.pages[0].asarray() if pages == 1 else None
    except FileNotFoundError as error:
        raise MicrographError(path, "no such file") from error
    except PermissionError as error:
        raise MicrographError(path, "cannot read: permission denied") from error
    except OSError as error:
        raise MicrographError(path, f"cannot read: {error.strerror or error}") from error
    except DECODE_ERRORS as error:
        raise MicrographError(path, f"not a readable TIFF file ({error})") from error
    except MemoryError as error:
        raise MicrographError(path, "too large to read into memory") from error
    if data is None:
        if pages == 0:
            raise MicrographError(path, "not a readable TIFF file (no image pages)")
        raise MicrographError(path, f"is a stack of {pages:,} pages, expected one 2-D image")
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise MicrographError(path, f"expected one 2-D image, got shape {data.shape}")
    if data.dtype.kind not in "biuf":
        raise MicrographError(path, f"unsupported TIFF data type {data.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # out of float32 range: Inf, counted
        image = data.astype(np.float32)
    non_finite = int(image.size - np.count_nonzero(np.isfinite(image)))
    if non_finite:
        raise MicrographError(path, f"contains {non_finite:,} non-finite values (NaN/Inf)")
    return Micrograph(image, float(pixel_size), path)


def _check_declared_size(path: Path, page: tifffile.TiffPage) -> None:
    """MicrographError unless the page's declared image fits: in the file when it is not
    compressed, within `MAX_IMAGE_BYTES` when it is."""
    declared = math.prod(page.shape) * np.dtype(page.dtype or np.uint8).itemsize
    limit = path.stat().st_size if page.compression == 1 else MAX_IMAGE_BYTES
    if declared > limit:
        raise MicrographError(
            path,
            f"not a readable TIFF file (its header declares a {'×'.join(map(str, page.shape))} "
            f"image of {declared:,} bytes in a file of {path.stat().st_size:,} bytes)",
        )
