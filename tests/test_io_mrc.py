"""Strict MRC reading and atomic writing, on real files written by mrcfile."""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from streamdenoise.errors import MicrographError
from streamdenoise.io import (
    atomic_output,
    expected_mrc_size,
    read_micrograph,
    read_mrc,
    write_mrc_atomic,
)


def write(path: Path, data: np.ndarray, voxel: float = 1.5) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile warns about the NaN test data
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = voxel
    return path


def check_error(path: Path, reason: str, **kwargs) -> MicrographError:
    with pytest.raises(MicrographError) as info:
        read_mrc(path, **kwargs)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and reason in str(info.value)
    return info.value


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_round_trip_keeps_data_mode_and_pixel_size(tmp_path: Path, dtype) -> None:
    data = np.random.default_rng(0).normal(size=(37, 53)).astype(dtype)
    path = tmp_path / "sub" / "m.mrc"
    write_mrc_atomic(path, data, 0.83, dtype=dtype)
    with mrcfile.open(path, permissive=False) as mrc:
        assert mrc.header.mode == (2 if dtype == np.float32 else 12)
        assert float(mrc.voxel_size.x) == pytest.approx(0.83)
    micrograph = read_mrc(path)
    assert micrograph.data.dtype == np.float32
    assert np.array_equal(micrograph.data, data.astype(np.float32))
    assert micrograph.pixel_size == pytest.approx(0.83) and micrograph.path == path
    assert [p.name for p in path.parent.iterdir()] == ["m.mrc"]  # no temporaries left


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.float32, np.float16])
def test_each_accepted_mode_reads_as_float32(tmp_path: Path, dtype) -> None:
    data = (np.arange(24).reshape(4, 6) % 7).astype(dtype)
    micrograph = read_mrc(write(tmp_path / "m.mrc", data))
    assert micrograph.data.dtype == np.float32
    assert np.array_equal(micrograph.data, data.astype(np.float32))


def test_single_section_volume_accepted_stack_rejected(tmp_path: Path) -> None:
    volume = np.ones((1, 8, 9), np.float32)
    path = tmp_path / "v.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(volume)
        mrc.set_volume()
        mrc.voxel_size = 2.0
    assert read_mrc(path).data.shape == (8, 9)
    stack = write(tmp_path / "s.mrc", np.ones((3, 8, 9), np.float32))
    check_error(stack, "stack of 3 sections")


def test_truncated_file_names_both_sizes(tmp_path: Path) -> None:
    path = write(tmp_path / "t.mrc", np.zeros((512, 512), np.float32))
    full = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(300_000)
    error = check_error(path, "truncated")
    assert f"300,000 of {full:,} bytes" in str(error)


def test_empty_short_and_text_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    check_error(empty, "empty file")
    short = tmp_path / "short.mrc"
    short.write_bytes(b"\0" * 100)
    check_error(short, "truncated")
    text = tmp_path / "notes.mrc"
    text.write_text("these are not the droids\n" * 100)
    check_error(text, "not an MRC file")


def test_header_that_lies_about_its_size(tmp_path: Path) -> None:
    longer = write(tmp_path / "long.mrc", np.zeros((16, 16), np.float32))
    with open(longer, "ab") as handle:
        handle.write(b"\0" * 64)
    check_error(longer, "size mismatch")
    bigger = write(tmp_path / "big.mrc", np.zeros((16, 16), np.float32))
    with open(bigger, "r+b") as handle:
        handle.write(struct.pack("<i", 32))  # nx claims 32 columns
    check_error(bigger, "truncated")


def test_unsupported_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "c.mrc", np.zeros((4, 4), np.float32))
    with open(path, "r+b") as handle:
        handle.seek(12)
        handle.write(struct.pack("<i", 4))  # complex64
    check_error(path, "unsupported MRC mode 4")
    with pytest.raises(MicrographError, match="unsupported MRC mode"):
        expected_mrc_size(path)


def test_nan_data_and_missing_pixel_size(tmp_path: Path) -> None:
    data = np.zeros((8, 8), np.float32)
    data[2, 3] = np.nan
    data[4, 4] = np.inf
    check_error(write(tmp_path / "nan.mrc", data), "2 non-finite values")
    no_pixel = write(tmp_path / "nopix.mrc", np.zeros((8, 8), np.float32), voxel=0.0)
    check_error(no_pixel, "no pixel size")
    assert read_mrc(no_pixel, pixel_size=1.1).pixel_size == 1.1


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    check_error(tmp_path / "absent.mrc", "no such file")
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    path = write(tmp_path / "locked.mrc", np.zeros((4, 4), np.float32))
    path.chmod(0)
    check_error(path, "permission denied")


def test_expected_size_includes_the_extended_header(tmp_path: Path) -> None:
    path = tmp_path / "ext.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((10, 12), np.int16))
        mrc.set_extended_header(np.zeros(40, dtype=np.uint8))
    assert expected_mrc_size(path) == path.stat().st_size == 1024 + 40 + 10 * 12 * 2


def test_atomic_output_leaves_nothing_on_failure_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_output(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".")
        temporary.write_text("new")
    assert target.read_text() == "new"


def test_read_micrograph_dispatches_by_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "a.mrc", np.ones((4, 4), np.float32))
    assert read_micrograph(path).pixel_size == 1.5
    other = tmp_path / "a.png"
    other.write_bytes(b"png")
    with pytest.raises(MicrographError, match="unsupported file type"):
        read_micrograph(other)
    with pytest.raises(ValueError, match="float32 or float16"):
        write_mrc_atomic(tmp_path / "x.mrc", np.zeros((2, 2)), 1.0, dtype=np.float64)
