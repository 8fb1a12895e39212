"""TIFF micrographs, on real files written by tifffile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from streamdenoise.errors import MicrographError
from streamdenoise.io import read_micrograph, read_tiff


def check_error(path: Path, reason: str, pixel_size: float | None = 1.0) -> MicrographError:
    with pytest.raises(MicrographError) as info:
        read_tiff(path, pixel_size)
    error = info.value
    assert isinstance(error, ValueError)
    assert str(path) in str(error) and reason in str(error), str(error)
    return error


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float16, np.float32])
def test_read_as_float32(tmp_path: Path, dtype) -> None:
    data = (np.arange(30).reshape(5, 6) * 4).astype(dtype)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data)
    micrograph = read_tiff(path, 0.9)
    assert micrograph.data.dtype == np.float32 and micrograph.data.shape == (5, 6)
    assert np.array_equal(micrograph.data, data.astype(np.float32))
    assert micrograph.pixel_size == 0.9 and micrograph.path == path


def test_dispatch_and_single_plane_volume(tmp_path: Path) -> None:
    path = tmp_path / "v.TIFF"
    tifffile.imwrite(path, np.ones((1, 5, 6), np.float32), photometric="minisblack")
    micrograph = read_micrograph(path, pixel_size=1.2)
    assert micrograph.data.shape == (5, 6) and micrograph.pixel_size == 1.2


def test_pixel_size_is_required(tmp_path: Path) -> None:
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.float32))
    for pixel_size in (None, 0.0, -1.0, float("nan")):
        check_error(path, "need an input pixel size", pixel_size)
    with pytest.raises(MicrographError, match="need an input pixel size"):
        read_micrograph(path)


def test_stacks_and_odd_images_are_rejected(tmp_path: Path) -> None:
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 5, 6), np.float32), photometric="minisblack")
    check_error(stack, "is a stack of 3 pages, expected one 2-D image")
    mixed = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(mixed) as writer:
        writer.write(np.zeros((8, 8), np.float32))
        writer.write(np.zeros((2, 2), np.float32))
    check_error(mixed, "is a stack of 2 pages")
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    check_error(rgb, "expected one 2-D image, got shape (8, 8, 3)")
    complex_ = tmp_path / "complex.tif"
    tifffile.imwrite(complex_, np.zeros((8, 8), np.complex64))
    check_error(complex_, "unsupported TIFF data type complex64")


def test_non_finite_values(tmp_path: Path) -> None:
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, np.full((4, 4), np.nan, np.float32))
    check_error(path, "contains 16 non-finite values (NaN/Inf)")
    huge = tmp_path / "huge.tif"
    tifffile.imwrite(huge, np.full((2, 3), 1e300))  # beyond float32: Inf once converted
    check_error(huge, "contains 6 non-finite values")


def test_broken_and_missing_files(tmp_path: Path) -> None:
    text = tmp_path / "bad.tiff"
    text.write_text("not a tiff")
    check_error(text, "not a readable TIFF file")
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.arange(256 * 256, dtype=np.float32).reshape(256, 256))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    check_error(truncated, "not a readable TIFF file")
    error = check_error(tmp_path / "absent.tif", "no such file")
    assert isinstance(error.__cause__, FileNotFoundError)
    check_error(tmp_path, "cannot read")  # a directory
