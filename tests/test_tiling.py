"""Tiling: coverage, windows, bit-exact identity round trip, weighted blending."""

from __future__ import annotations

import numpy as np
import pytest

from streamdenoise.engine.batches import map_batches
from streamdenoise.model.tiling import blend_tiles, extract_tiles, plan_tiles


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((h, w)).astype(np.float32)


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "window"),
    [
        (1439, 1023, 512, 32, "cosine"),
        (1440, 1023, 512, 32, "cosine"),  # 5760×4092 binned by 4
        (1440, 1023, 192, 96, "flat"),  # the faithful plan
        (1439, 1023, 192, 96, "cosine"),
        (100, 37, 128, 16, "cosine"),  # smaller than one tile: reflect-padded
        (700, 90, 256, 0, "cosine"),
    ],
)
def test_identity_through_extract_and_blend_is_bit_exact(
    h: int, w: int, tile: int, overlap: int, window: str
) -> None:
    image = _image(h, w)
    plan = plan_tiles(h, w, tile, overlap, window=window)  # type: ignore[arg-type]
    tiles = extract_tiles(image, plan)
    assert tiles.shape == (plan.n_tiles, tile, tile)
    assert tiles.dtype == np.float32
    out = blend_tiles(tiles, plan)
    assert out.dtype == np.float32
    assert np.array_equal(out, image)
    tiles = map_batches(extract_tiles(image, plan), lambda b: b.copy(), batch_size=3)
    assert np.array_equal(blend_tiles(tiles, plan), image)


def test_float64_identity_is_bit_exact_too() -> None:
    image = np.random.default_rng(1).standard_normal((300, 257))
    plan = plan_tiles(300, 257, 128, 24)
    out = blend_tiles(extract_tiles(image, plan), plan)
    assert out.dtype == np.float64
    assert np.array_equal(out, image)


def test_plan_covers_the_image_and_shifts_the_last_tile_inside() -> None:
    plan = plan_tiles(1439, 1023, 512, 32)
    assert plan.row_origins == (0, 480, 927)  # 927 = 1439 − 512, shifted back inside
    assert plan.col_origins == (0, 480, 511)
    assert (plan.padded_height, plan.padded_width) == (1439, 1023)
    cover = np.zeros((1439, 1023), dtype=int)
    for r, c in plan.origins:
        assert 0 <= r <= 1439 - 512 and 0 <= c <= 1023 - 512
        cover[r : r + 512, c : c + 512] += 1
    assert cover.min() >= 1
    faithful = plan_tiles(1440, 1023, 192, 96, window="flat")
    assert faithful.row_origins == tuple(range(0, 1249, 96))
    assert faithful.col_origins[-1] == 1023 - 192
    exact = plan_tiles(1024, 512, 512, 0)
    assert exact.row_origins == (0, 512) and exact.col_origins == (0,)


def test_small_image_is_reflect_padded() -> None:
    image = _image(50, 200)
    plan = plan_tiles(50, 200, 64, 8)
    assert (plan.padded_height, plan.padded_width) == (64, 200)
    tiles = extract_tiles(image, plan)
    # rows 50.. are the reflection of rows 48, 47, ...
    np.testing.assert_array_equal(tiles[0, 50:, :64], image[48:34:-1, :64])


def test_cosine_window_is_smooth_positive_and_one_inside() -> None:
    plan = plan_tiles(512, 512, 128, 16)
    w = plan.weights()
    assert w.shape == (128, 128) and w.dtype == np.float32
    assert (w > 0).all() and (w <= 1).all()
    assert (w[16:-16, 16:-16] == 1).all()
    assert (w[:16, 64] < 1).all()
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(w, w[::-1, ::-1])
    ramp = w[:17, 64]
    assert (np.diff(ramp) > 0).all()
    assert (plan_tiles(512, 512, 128, 16, window="flat").weights() == 1).all()


def test_blend_is_the_weighted_mean_of_covering_tiles() -> None:
    plan = plan_tiles(300, 260, 128, 40)
    tiles = np.random.default_rng(2).standard_normal((plan.n_tiles, 128, 128)).astype(np.float32)
    w = plan.weights().astype(np.float64)
    num = np.zeros((300, 260))
    den = np.zeros((300, 260))
    for tile_values, (r, c) in zip(tiles, plan.origins, strict=True):
        num[r : r + 128, c : c + 128] += w * tile_values
        den[r : r + 128, c : c + 128] += w
    np.testing.assert_allclose(blend_tiles(tiles, plan), num / den, rtol=1e-5, atol=1e-6)


def test_blend_of_constant_tiles_is_continuous_and_between_values() -> None:
    plan = plan_tiles(64, 200, 64, 32)
    assert plan.col_origins == (0, 32, 64, 96, 128, 136)
    tiles = np.arange(plan.n_tiles, dtype=np.float32)[:, None, None] * np.ones(
        (1, 64, 64), np.float32
    )
    row = blend_tiles(tiles, plan)[10]
    assert row[0] == 0 and row[-1] == plan.n_tiles - 1  # single-tile pixels keep their tile's value
    assert (np.diff(row) >= 0).all()  # monotone: no seam artefacts
    assert np.abs(np.diff(row)).max() < 0.2  # smooth ramps, no jumps


@pytest.mark.parametrize(("tile", "overlap"), [(64, 64), (64, -1), (0, 0)])
def test_plan_rejects_bad_geometry(tile: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        plan_tiles(100, 100, tile, overlap)


def test_shape_mismatches_are_rejected() -> None:
    plan = plan_tiles(100, 100, 64, 8)
    with pytest.raises(ValueError, match="does not match"):
        extract_tiles(_image(100, 99), plan)
    with pytest.raises(ValueError, match="does not match"):
        blend_tiles(np.zeros((plan.n_tiles + 1, 64, 64), np.float32), plan)
