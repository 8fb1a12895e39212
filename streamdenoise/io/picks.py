"""Candidate particle coordinates for downstream pickers: RELION STAR and EMAN/crYOLO .box.

Coordinates are (N, 2) arrays of particle centres (x, y) in pixels of the micrograph they
were found on; both writers are atomic (a reader sees the old file or the whole new one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamdenoise.io.atomic import atomic_write_text
from streamdenoise.io.star import write_star_atomic


def _centres(coords_xy: np.ndarray) -> np.ndarray:
    """(N, 2) float64 centres; raises ValueError for another shape or non-finite values."""
    centres = np.asarray(coords_xy, dtype=np.float64)
    if centres.size == 0:
        return centres.reshape(0, 2)
    if centres.ndim != 2 or centres.shape[1] != 2:
        raise ValueError(f"coordinates must be (N, 2) as (x, y), got shape {centres.shape}")
    if not np.isfinite(centres).all():
        raise ValueError("coordinates must be finite")
    return centres


def write_coordinates_star(path: str | Path, coords_xy: np.ndarray, scores: np.ndarray) -> None:
    """Write a RELION coordinate STAR file: one `data_` block with `_rlnCoordinateX`,
    `_rlnCoordinateY` (pixel centres) and `_rlnAutopickFigureOfMerit` (`scores`, (N,))."""
    centres = _centres(coords_xy)
    merits = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(merits) != len(centres):
        raise ValueError(f"{len(centres)} coordinates but {len(merits)} scores")
    write_star_atomic(
        path,
        {
            "": {
                "_rlnCoordinateX": centres[:, 0].tolist(),
                "_rlnCoordinateY": centres[:, 1].tolist(),
                "_rlnAutopickFigureOfMerit": merits.tolist(),
            }
        },
    )


def write_box(path: str | Path, coords_xy: np.ndarray, box_size_px: int) -> None:
    """Write an EMAN/crYOLO .box file: per particle one line `x y w h`, tab-separated
    integers, (x, y) the lower-left corner of a `box_size_px` square box around the centre
    (centre − size/2, rounded)."""
    if box_size_px < 1:
        raise ValueError(f"box size must be at least 1 pixel, got {box_size_px}")
    size = int(box_size_px)
    # Round half up (not to even): centres 100 and 101 at box 57 give corners 72 and 73.
    corners = np.floor(_centres(coords_xy) - size / 2 + 0.5).astype(np.int64)
    atomic_write_text(path, "".join(f"{x}\t{y}\t{size}\t{size}\n" for x, y in corners))
