"""Strict MRC reading and atomic writing, on real files written by mrcfile."""

from __future__ import annotations

import builtins
import os
import struct
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from readers import assert_valid_mrc

from streamdenoise.errors import MicrographError
from streamdenoise.io import expected_mrc_size, read_micrograph, read_mrc, write_mrc_atomic


def write(path: Path, data: np.ndarray, voxel: float = 1.5) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile warns about NaN statistics
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = voxel
    return path


def patch_int32(path: Path, offset: int, value: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(struct.pack("<i", value))


def check_error(path: Path, reason: str, **kwargs: float) -> MicrographError:
    with pytest.raises(MicrographError) as info:
        read_mrc(path, **kwargs)
    error = info.value
    assert isinstance(error, ValueError)
    assert str(path) in str(error) and reason in str(error), str(error)
    return error


@pytest.mark.parametrize(("dtype", "mode"), [(np.float32, 2), (np.float16, 12)])
def test_round_trip_keeps_data_mode_and_pixel_size(tmp_path: Path, dtype, mode: int) -> None:
    data = np.random.default_rng(0).normal(size=(37, 53)).astype(dtype)
    path = tmp_path / "sub" / "dir" / "m.mrc"
    write_mrc_atomic(path, data, 0.83, dtype=dtype)
    with mrcfile.open(path, permissive=False) as mrc:
        assert mrc.header.mode == mode
        assert float(mrc.voxel_size.x) == pytest.approx(0.83)
        assert float(mrc.header.dmax) == pytest.approx(float(data.max()))
    assert expected_mrc_size(path) == path.stat().st_size
    micrograph = read_mrc(path)
    assert micrograph.data.dtype == np.float32 and micrograph.data.shape == (37, 53)
    assert np.array_equal(micrograph.data, data.astype(np.float32))
    assert micrograph.pixel_size == pytest.approx(0.83) and micrograph.path == path
    assert [p.name for p in path.parent.iterdir()] == ["m.mrc"]  # no temporaries left


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_micrograph_sized_outputs_pass_mrcfile_validate(tmp_path: Path, dtype) -> None:
    # Counts around 560 over 512²: a float16 standard deviation overflows (sums > 65504).
    data = np.random.default_rng(1).normal(560.0, 30.0, size=(512, 512)).astype(dtype)
    path = tmp_path / "m.mrc"
    write_mrc_atomic(path, data, 4.0, dtype=dtype, labels=["streamdenoise test"])
    assert_valid_mrc(path)
    with mrcfile.open(path, permissive=False) as mrc:
        exact = data.astype(np.float64)
        assert float(mrc.header.dmean) == pytest.approx(exact.mean(), rel=1e-6)
        assert float(mrc.header.dmin) == exact.min() and float(mrc.header.dmax) == exact.max()
        rms = float(mrc.header.rms)
        assert rms == -1.0 if dtype == np.float16 else rms == pytest.approx(exact.std(), rel=1e-5)
        assert mrc.get_labels()[1].startswith("streamdenoise test")


def test_write_replaces_and_rejects_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "m.mrc"
    write_mrc_atomic(path, np.zeros((4, 4)), 1.0)
    write_mrc_atomic(path, np.ones((6, 5)), 2.0)
    assert read_mrc(path).data.shape == (6, 5) and read_mrc(path).pixel_size == 2.0
    bad = [
        ((np.zeros((2, 2)), 1.0), {"dtype": np.float64}, "float32 or float16"),
        ((np.zeros((2, 2, 2)), 1.0), {}, "2-D"),
        ((np.zeros((2, 2)), 0.0), {}, "pixel size"),
        ((np.full((2, 2), np.nan), 1.0), {}, "non-finite"),
        ((np.full((2, 2), 1e6), 1.0), {"dtype": np.float16}, "float16 range"),
    ]
    for args, kwargs, reason in bad:
        with pytest.raises(ValueError, match=reason):
            write_mrc_atomic(tmp_path / "x.mrc", *args, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mrc"]


@pytest.mark.parametrize(
    ("dtype", "mode"),
    [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6), (np.float16, 12)],
)
def test_each_accepted_mode_reads_as_float32(tmp_path: Path, dtype, mode: int) -> None:
    data = (np.arange(24).reshape(4, 6) * 3 - 20).astype(dtype)
    if np.dtype(dtype).kind == "u":
        data = (np.arange(24).reshape(4, 6) * 2000).astype(dtype)  # up to 46,000 > int16
    path = write(tmp_path / "m.mrc", data)
    with mrcfile.open(path) as mrc:
        assert mrc.header.mode == mode
    micrograph = read_mrc(path)
    assert micrograph.data.dtype == np.float32
    assert np.array_equal(micrograph.data, data.astype(np.float32))
    assert micrograph.pixel_size == 1.5


def test_big_endian_file(tmp_path: Path) -> None:
    data = np.arange(12, dtype=">i2").reshape(3, 4)
    path = write(tmp_path / "be.mrc", data)
    assert expected_mrc_size(path) == path.stat().st_size == 1024 + 12 * 2
    assert np.array_equal(read_mrc(path).data, data.astype(np.float32))


def test_single_section_volume_accepted_stack_rejected(tmp_path: Path) -> None:
    path = tmp_path / "v.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.ones((1, 8, 9), np.float32))
        mrc.set_volume()
        mrc.voxel_size = 2.0
    micrograph = read_mrc(path)
    assert micrograph.data.shape == (8, 9) and micrograph.pixel_size == 2.0
    stack = write(tmp_path / "s.mrc", np.ones((3, 8, 9), np.float32))
    check_error(stack, "is a stack of 3 sections, expected one micrograph")


def test_truncated_file_names_both_sizes(tmp_path: Path) -> None:
    path = write(tmp_path / "t.mrc", np.zeros((2048, 2048), np.float32))
    assert path.stat().st_size == 16_778_240
    with open(path, "r+b") as handle:
        handle.truncate(12_582_912)
    error = check_error(path, "truncated: 12,582,912 of 16,778,240 bytes")
    assert error.path == path and error.reason.startswith("truncated")
    assert expected_mrc_size(path) == 16_778_240  # the header alone still says how long


def test_empty_short_and_text_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    check_error(empty, "empty file")
    short = tmp_path / "short.mrc"
    short.write_bytes(b"\0" * 100)
    check_error(short, "truncated: 100 bytes, shorter than the 1,024-byte header")
    text = tmp_path / "notes.mrc"
    text.write_text("these are not the micrographs you are looking for\n" * 40)
    check_error(text, "not an MRC file")
    with pytest.raises(MicrographError, match="not an MRC file"):
        expected_mrc_size(text)


def test_garbage_header_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "g.mrc", np.zeros((4, 4), np.float32))
    patch_int32(path, 0, -5)  # nx
    check_error(path, "not an MRC file (bad dimensions -5×4×1")
    path = write(tmp_path / "s.mrc", np.zeros((4, 4), np.float32))
    patch_int32(path, 212, 0)  # machine stamp
    check_error(path, "unrecognised machine stamp 0x00 0x00")


def test_header_that_lies_about_its_size(tmp_path: Path) -> None:
    longer = write(tmp_path / "long.mrc", np.zeros((16, 16), np.float32))
    with open(longer, "ab") as handle:
        handle.write(b"\0" * 64)
    check_error(longer, "size mismatch: 2,112 bytes but the header implies 2,048")
    bigger = write(tmp_path / "big.mrc", np.zeros((16, 16), np.float32))
    patch_int32(bigger, 0, 32)  # nx claims 32 columns
    check_error(bigger, "truncated: 2,048 of 3,072 bytes")


def test_unsupported_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "c.mrc", np.zeros((4, 4), np.float32))
    patch_int32(path, 12, 4)  # complex64
    check_error(path, "unsupported MRC mode 4")
    with pytest.raises(MicrographError, match="unsupported MRC mode 4"):
        expected_mrc_size(path)


def test_non_finite_values(tmp_path: Path) -> None:
    check_error(write(tmp_path / "nan.mrc", np.full((8, 8), np.nan, np.float32)), "64 non-finite")
    data = np.zeros((8, 8), np.float16)
    data[2, 3], data[4, 4] = np.inf, -np.inf
    check_error(write(tmp_path / "inf.mrc", data), "contains 2 non-finite values (NaN/Inf)")


def test_pixel_size_from_header_or_caller(tmp_path: Path) -> None:
    no_pixel = write(tmp_path / "nopix.mrc", np.zeros((8, 8), np.float32), voxel=0.0)
    check_error(
        no_pixel, "no pixel size in the header; give the input pixel size (--input-pixel-size)"
    )
    assert read_mrc(no_pixel, pixel_size=1.1).pixel_size == 1.1
    with_pixel = write(tmp_path / "pix.mrc", np.zeros((8, 8), np.float32), voxel=1.5)
    assert read_mrc(with_pixel, pixel_size=0.7).pixel_size == 0.7  # the caller overrides
    check_error(with_pixel, "pixel size must be positive", pixel_size=-1.0)
    no_sampling = write(tmp_path / "mx0.mrc", np.zeros((8, 8), np.float32))
    patch_int32(no_sampling, 28, 0)  # mx = 0: voxel size cella/mx is not finite
    check_error(no_sampling, "no pixel size in the header")


def test_missing_and_unreadable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    error = check_error(tmp_path / "absent.mrc", "no such file")
    assert isinstance(error.__cause__, FileNotFoundError)
    check_error(tmp_path, "cannot read")  # a directory
    path = write(tmp_path / "locked.mrc", np.zeros((4, 4), np.float32))
    if os.geteuid() == 0:  # root reads anything: make open() refuse instead

        def refuse(file: object, *args: object, **kwargs: object) -> object:
            if Path(str(file)) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return builtins.open(file, *args, **kwargs)

        monkeypatch.setattr("streamdenoise.io.mrc.open", refuse, raising=False)
    else:
        path.chmod(0)
    error = check_error(path, "cannot read: permission denied")
    assert isinstance(error.__cause__, PermissionError)


def test_expected_size_includes_the_extended_header(tmp_path: Path) -> None:
    path = tmp_path / "ext.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((10, 12), np.int16))
        mrc.set_extended_header(np.zeros(40, dtype=np.uint8))
    assert expected_mrc_size(path) == path.stat().st_size == 1024 + 40 + 10 * 12 * 2
    assert read_mrc(path, pixel_size=1.0).data.shape == (10, 12)
    stack = write(tmp_path / "stack.mrc", np.zeros((5, 6, 7), np.uint16))
    assert expected_mrc_size(stack) == stack.stat().st_size == 1024 + 5 * 6 * 7 * 2


def test_read_micrograph_dispatches_by_suffix(tmp_path: Path) -> None:
    for name in ("a.mrc", "b.MAP"):
        path = write(tmp_path / name, np.ones((4, 4), np.float32))
        assert read_micrograph(path).pixel_size == 1.5
    other = tmp_path / "a.png"
    other.write_bytes(b"png")
    with pytest.raises(MicrographError, match="unsupported file type") as info:
        read_micrograph(other)
    assert str(other) in str(info.value)
