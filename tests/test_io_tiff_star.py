"""TIFF micrographs and RELION STAR files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from streamdenoise.errors import FileProblem, MicrographError
from streamdenoise.io import read_micrograph, read_star, read_tiff, write_star_atomic


def test_tiff_round_trip_and_errors(tmp_path: Path) -> None:
    data = np.arange(30, dtype=np.uint16).reshape(5, 6)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data)
    micrograph = read_micrograph(path, pixel_size=0.9)
    assert micrograph.data.dtype == np.float32 and np.array_equal(micrograph.data, data)
    assert micrograph.pixel_size == 0.9
    with pytest.raises(MicrographError, match="need a pixel size"):
        read_tiff(path, None)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 5, 6), np.float32), photometric="minisblack")
    with pytest.raises(MicrographError, match="expected one 2-D image"):
        read_tiff(stack, 1.0)
    bad = tmp_path / "bad.tiff"
    bad.write_text("not a tiff")
    with pytest.raises(MicrographError, match="not a readable TIFF") as info:
        read_tiff(bad, 1.0)
    assert str(bad) in str(info.value)
    nan = tmp_path / "nan.tif"
    tifffile.imwrite(nan, np.full((4, 4), np.nan, np.float32))
    with pytest.raises(MicrographError, match="16 non-finite"):
        read_tiff(nan, 1.0)


def test_star_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "coords.star"
    write_star_atomic(
        path,
        {
            "": {"_rlnCoordinateX": [1.5, 2.25], "_rlnCoordinateY": [3.0, 4.0]},
            "micrographs": {"_rlnMicrographName": ["a b.mrc", "c.mrc"], "_rlnIndex": [1, 2]},
        },
    )
    blocks = read_star(path)
    assert blocks[""]["_rlnCoordinateX"] == ["1.500000", "2.250000"]
    assert blocks["micrographs"]["_rlnMicrographName"] == ["a b.mrc", "c.mrc"]
    assert blocks["micrographs"]["_rlnIndex"] == ["1", "2"]


def test_star_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.star"
    path.write_text("data_\nloop_\n_rlnA #1\n_rlnB #2\n1 2 3\n")
    with pytest.raises(FileProblem, match="3 values for 2 columns") as info:
        read_star(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="differ in length"):
        write_star_atomic(tmp_path / "x.star", {"": {"_a": [1], "_b": [1, 2]}})
