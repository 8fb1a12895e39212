"""TIFF micrographs (a single 2-D page). TIFF resolution tags are not trusted for EM, so
the pixel size is always given by the caller."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamdenoise.errors import MicrographError
from streamdenoise.io.mrc import Micrograph


def read_tiff(path: str | Path, pixel_size: float | None) -> Micrograph:
    """Read a one-page TIFF micrograph as float32 (ny, nx) with `pixel_size` Å/px."""
    import tifffile

    path = Path(path)
    if pixel_size is None or not pixel_size > 0:
        raise MicrographError(path, "TIFF micrographs need a pixel size (--pixel-size)")
    if not path.is_file():
        raise MicrographError(path, "no such file")
    try:
        data = tifffile.imread(path)
    except PermissionError as error:
        raise MicrographError(path, "cannot read: permission denied") from error
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, IndexError) as error:
        raise MicrographError(path, f"not a readable TIFF file: {error}") from error
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise MicrographError(path, f"expected one 2-D image, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise MicrographError(path, f"unsupported TIFF data type {data.dtype}")
    data = data.astype(np.float32)
    non_finite = int(np.count_nonzero(~np.isfinite(data)))
    if non_finite:
        raise MicrographError(path, f"contains {non_finite:,} non-finite values (NaN/Inf)")
    return Micrograph(data=data, pixel_size=float(pixel_size), path=path)
