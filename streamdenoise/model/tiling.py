"""Cutting a micrograph into fixed-size overlapping tiles and blending them back.

Shared by one-shot denoising, the daemon and the distributed runner (which run the tiles
in batches with `streamdenoise.engine.batches`). Pure numpy.

Geometry: along each axis, tiles of size `tile` start every `tile − overlap` pixels; the last
tile is shifted back so that it ends exactly at the image edge (no tile hangs outside the
image), so any size >= tile needs no padding. An axis shorter than one tile is reflect-padded
at its end up to `tile`. All tiles therefore have the same shape, which keeps batch shapes
fixed for `torch.compile`.

Blending: each tile carries a separable weight window, and the output is the weighted mean
of all tiles covering a pixel, computed online (acc += (w / wsum_new)·(tile − acc)). When all
covering tiles agree, every update after the first is exactly zero and the first one is
exactly the tile value (w / w == 1), so an identity function through
extract → blend returns its input bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

DEFAULT_MAX_TILE = 384
"""Largest tile side (pixels of the working image) when none is configured: on a 2-core CPU
384 measured faster than 512 and 1024 (55–61 % vs 41–46 % of the matrix-product rate at 512,
benchmarks/RESULTS.md "Throughput"); a GPU batches eight of them per call."""

WindowKind = Literal["cosine", "flat"]


def _axis_origins(length: int, tile: int, stride: int) -> tuple[int, ...]:
    """Tile start positions along an axis of `length` (>= tile) pixels."""
    last = length - tile
    origins = list(range(0, last + 1, stride))
    if origins[-1] != last:
        origins.append(last)
    return tuple(origins)


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image lie. Build with `plan_tiles`.

    Attributes:
        height, width: size of the image, pixels.
        tile: tile side, pixels.
        overlap: nominal overlap of neighbouring tiles, pixels (the last tile of an axis may
            overlap more); also the width of the blending ramp.
        window: "cosine" (raised-cosine ramp over `overlap`, 1 inside) or "flat" (all 1:
            overlapping tiles are plainly averaged).
        padded_height, padded_width: size after reflect padding (max(size, tile)).
        row_origins, col_origins: tile start rows / columns in the padded image; the tiles
            are all (row, col) pairs, row-major.
    """

    height: int
    width: int
    tile: int
    overlap: int
    window: WindowKind
    padded_height: int
    padded_width: int
    row_origins: tuple[int, ...]
    col_origins: tuple[int, ...]

    @property
    def origins(self) -> list[tuple[int, int]]:
        """(row, col) of every tile's top-left corner in the padded image, in tile order."""
        return [(r, c) for r in self.row_origins for c in self.col_origins]

    @property
    def n_tiles(self) -> int:
        """Number of tiles N."""
        return len(self.row_origins) * len(self.col_origins)

    def weights(self) -> np.ndarray:
        """Blending window (tile, tile) float32, strictly > 0 everywhere.

        "cosine": separable, each axis 0.5 − 0.5·cos(π (i + ½) / overlap) over the first and
        last `overlap` pixels and 1 in between; "flat" (or overlap 0): all ones.
        """
        ramp = np.ones(self.tile, dtype=np.float64)
        if self.window == "cosine" and self.overlap > 0:
            i = np.arange(self.tile, dtype=np.float64)
            edge = np.minimum(i, self.tile - 1 - i)  # distance to the nearer tile edge
            rising = 0.5 - 0.5 * np.cos(np.pi * (edge + 0.5) / self.overlap)
            ramp = np.where(edge < self.overlap, rising, 1.0)
        return np.outer(ramp, ramp).astype(np.float32)


def plan_tiles(
    height: int, width: int, tile: int, overlap: int, window: WindowKind = "cosine"
) -> TilePlan:
    """Plan tiles of side `tile` overlapping by `overlap` over a (height, width) image.

    Requires 0 <= overlap < tile. The faithful reference plan (tile 192, stride 96) is
    `plan_tiles(h, w, 192, 96, window="flat")`.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}×{width}")
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(
            f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}"
        )
    if window not in ("cosine", "flat"):
        raise ValueError(f"window must be 'cosine' or 'flat', got {window!r}")
    padded_h, padded_w = max(height, tile), max(width, tile)
    stride = tile - overlap
    return TilePlan(
        height=height,
        width=width,
        tile=tile,
        overlap=overlap,
        window=window,
        padded_height=padded_h,
        padded_width=padded_w,
        row_origins=_axis_origins(padded_h, tile, stride),
        col_origins=_axis_origins(padded_w, tile, stride),
    )


def extract_tiles(image: np.ndarray, plan: TilePlan) -> np.ndarray:
    """Cut an image into the plan's tiles: (H, W) → (N, tile, tile), same dtype."""
    if image.shape != (plan.height, plan.width):
        raise ValueError(
            f"image shape {image.shape} does not match the plan's {(plan.height, plan.width)}"
        )
    pad = ((0, plan.padded_height - plan.height), (0, plan.padded_width - plan.width))
    padded = np.pad(image, pad, mode="reflect") if any(p[1] for p in pad) else image
    t = plan.tile
    return np.stack([padded[r : r + t, c : c + t] for r, c in plan.origins])


def blend_tiles(tiles: np.ndarray, plan: TilePlan) -> np.ndarray:
    """Weighted mean of overlapping tiles: (N, tile, tile) → (H, W), dtype of `tiles`.

    Uses the online update described in the module docstring, so identical overlapping
    values are reproduced exactly.
    """
    t = plan.tile
    if tiles.shape != (plan.n_tiles, t, t):
        raise ValueError(
            f"tiles shape {tiles.shape} does not match the plan's {(plan.n_tiles, t, t)}"
        )
    dtype = np.result_type(tiles.dtype, np.float32)
    acc = np.zeros((plan.padded_height, plan.padded_width), dtype=dtype)
    wsum = np.zeros_like(acc)
    w = plan.weights().astype(dtype)
    for tile_values, (r, c) in zip(tiles, plan.origins, strict=True):
        a = acc[r : r + t, c : c + t]
        s = wsum[r : r + t, c : c + t]
        s += w
        a += (w / s) * (tile_values - a)
    return acc[: plan.height, : plan.width].astype(tiles.dtype, copy=False)
