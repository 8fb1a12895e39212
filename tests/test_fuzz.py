"""Property-based fuzzing of every file the program reads: MRC and TIFF micrographs, STAR
files and the TOML configuration. Whatever the bytes, the readers return a value or raise
one of the package's named errors (`streamdenoise.errors`), never another exception.

Micrographs go through what the daemon does with a file: the header check, the strict
read, then binning and the noise estimate (`read_prepared`).
"""

from __future__ import annotations

import json
import math
import os
import struct
import typing
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streamdenoise.config import TABLE_OF, TABLES, load_settings
from streamdenoise.errors import StreamDenoiseError
from streamdenoise.io import expected_mrc_size, read_micrograph, read_star
from streamdenoise.model.pipeline import DenoiseSettings
from streamdenoise.processing import read_prepared

EXPLORE = int(os.environ.get("STREAMDENOISE_FUZZ_EXAMPLES", "0"))
"""Random examples to explore per test (0: the fixed, derandomized 50 that CI runs, so that
a red CI can be reproduced; a find goes in as an `@example`)."""
FUZZ = settings(
    max_examples=EXPLORE or 50,
    derandomize=not EXPLORE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def mrc_bytes(folder: Path, data: np.ndarray, pixel_size: float = 4.0) -> bytes:
    """A valid MRC file of `data`, written by mrcfile."""
    path = folder / "base.mrc"
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = pixel_size
    return path.read_bytes()


def only_named_errors(path: Path, pixel_size: float | None = None) -> None:
    """Check, read and prepare `path` as the daemon does: values or package errors only."""
    try:
        if path.suffix == ".mrc":
            expected_mrc_size(path)
        micrograph = read_micrograph(path, pixel_size=pixel_size)
        assert micrograph.data.ndim == 2 and micrograph.data.dtype == np.float32
        assert np.all(np.isfinite(micrograph.data)) and micrograph.pixel_size > 0
        read_prepared(path, 4.0, DenoiseSettings(), pixel_size)
    except StreamDenoiseError as error:
        assert str(path) in str(error)  # named errors name the file


DTYPES = [np.int8, np.int16, np.uint16, np.float32, np.float16]
HEADER_FIELDS = st.fixed_dictionaries(
    {
        "nx": st.integers(-2, 70),
        "ny": st.integers(-2, 70),
        "nz": st.integers(-1, 3),
        "mode": st.sampled_from([-1, 0, 1, 2, 3, 4, 6, 12, 101, 2**31 - 1]),
        "nsymbt": st.sampled_from([-8, 0, 4, 80, 2**31 - 1]),
    }
)


@FUZZ
@given(
    fields=HEADER_FIELDS,
    dtype=st.sampled_from(DTYPES),
    shape=st.tuples(st.integers(1, 80), st.integers(1, 80)),
    size_change=st.integers(-1100, 64),
    pixel_size=st.sampled_from([0.0, -1.0, math.nan, 1.0, 4.0]),
)
def test_mrc_headers_and_sizes(
    folder: Path, fields: dict, dtype, shape, size_change: int, pixel_size: float
) -> None:
    rng = np.random.default_rng(0)
    data = (rng.standard_normal(shape) * 10).astype(dtype)
    raw = bytearray(mrc_bytes(folder, data, pixel_size))
    for offset, name in ((0, "nx"), (4, "ny"), (8, "nz"), (12, "mode"), (92, "nsymbt")):
        if fields[name] is not None:
            raw[offset : offset + 4] = struct.pack("<i", fields[name])
    size = max(0, len(raw) + size_change)
    path = folder / "fuzzed.mrc"
    path.write_bytes(bytes(raw[:size]) + b"\0" * max(0, size - len(raw)))
    only_named_errors(path)


@FUZZ
@given(
    changes=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), max_size=12),
    values=st.sampled_from([0.0, math.nan, math.inf, 1e38, -3.0]),
)
def test_mrc_random_header_bytes(folder: Path, changes, values: float) -> None:
    data = np.random.default_rng(1).poisson(5.0, (32, 40)).astype(np.float32)
    raw = bytearray(mrc_bytes(folder, data))
    raw[1024:1028] = struct.pack("<f", values)  # the first pixel
    for offset, byte in changes:
        raw[offset] = byte
    path = folder / "bytes.mrc"
    path.write_bytes(bytes(raw))
    only_named_errors(path)


@FUZZ
@given(blob=st.binary(max_size=3000))
def test_any_bytes_named_mrc_or_tiff(folder: Path, blob: bytes) -> None:
    for name in ("blob.mrc", "blob.tif"):
        path = folder / name
        path.write_bytes(blob)
        only_named_errors(path, pixel_size=1.0 if name.endswith(".tif") else None)


TIFF_DTYPES = [np.uint8, np.int16, np.uint16, np.float32, np.float64, np.complex64, np.bool_]


@FUZZ
@given(
    dtype=st.sampled_from(TIFF_DTYPES),
    shape=st.sampled_from([(1, 1), (2, 37), (40, 33), (3, 16, 16), (1, 20, 20), (16, 16, 3)]),
    cut=st.integers(0, 4000),
    changes=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
    pixel_size=st.sampled_from([None, 0.0, 2.0]),
)
# Found in CI: a width tag changed to 38·2¹⁶ + 40 declared a 24 GiB image (MemoryError).
@example(dtype=np.uint8, shape=(40, 33), cut=178, changes=[(21, 38)], pixel_size=2.0)
def test_tiff_files(folder: Path, dtype, shape, cut: int, changes, pixel_size) -> None:
    data = (np.random.default_rng(2).standard_normal(shape) * 50).astype(dtype)
    path = folder / "fuzzed.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    raw = bytearray(path.read_bytes())
    for offset, byte in changes:
        if offset < len(raw):
            raw[offset] = byte
    path.write_bytes(bytes(raw[: max(cut, 8)] if cut < len(raw) else raw))
    only_named_errors(path, pixel_size)


STAR_LINES = st.sampled_from(
    [
        "data_",
        "data_micrographs",
        "loop_",
        "_rlnMicrographName #1",
        "_rlnCoordinateX",
        "_rlnMicrographPixelSize 4.0",
        "mic_0001.mrc 4.0",
        "'quoted value' 2",
        '"unterminated',
        "# a comment",
        "",
        "12 13 14",
        "_label",
    ]
)


@FUZZ
@given(
    lines=st.lists(st.one_of(STAR_LINES, st.text(max_size=30)), max_size=20),
    tail=st.binary(max_size=8),
)
def test_star_files(folder: Path, lines: list[str], tail: bytes) -> None:
    path = folder / "fuzzed.star"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + tail)
    try:
        blocks = read_star(path)
    except StreamDenoiseError as error:
        assert str(path) in str(error)
        return
    for block in blocks.values():
        assert all(isinstance(v, str) for values in block.values() for v in values)


HINTS = {
    key: hint for model in TABLES.values() for key, hint in typing.get_type_hints(model).items()
}
SETTINGS = [*HINTS, "nonsense"]
SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["live", "faithful", "oldest", "newest", "cpu", "*.mrc"]),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["cnr", "density", "x"]), SCALARS, max_size=2),
)


def typed(hint: object) -> st.SearchStrategy:
    """Values of the setting's own type, over their whole range (and None's absence)."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    strategies = []
    for option in options:
        origin = typing.get_origin(option)
        if option is bool:
            strategies.append(st.booleans())
        elif option is int:
            strategies.append(st.integers(-(2**40), 2**40))
        elif option is float:
            strategies.append(st.floats(-1e12, 1e12) | st.integers(-5, 5))
        elif origin is tuple:
            strategies.append(st.lists(st.text(max_size=6), max_size=3))
        elif origin is dict:
            strategies.append(
                st.dictionaries(st.sampled_from(["min_cnr", "cnr", "x"]), st.floats(-9, 9))
            )
        else:
            strategies.append(st.sampled_from(["oldest", "cpu", "cuda:7", "", "x", "/proc/x"]))
    return st.one_of(strategies)


SETTING = st.sampled_from(SETTINGS).flatmap(
    lambda key: st.tuples(st.just(key), typed(HINTS.get(key, str)) | VALUES)
)


def toml_value(value: object) -> str:
    """`value` as TOML (strings as JSON-escaped basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


@FUZZ
@given(
    values=st.lists(SETTING, max_size=6).map(dict),
    garbage=st.one_of(st.just(""), st.sampled_from(["[", "= 3", "x = ", "\x00", "[[a]]\nb=1"])),
)
def test_toml_configuration(folder: Path, values: dict, garbage: str) -> None:
    path = folder / "fuzzed.toml"
    tables: dict[str, list[str]] = {}
    for key, value in values.items():
        tables.setdefault(TABLE_OF.get(key, "watch"), []).append(f"{key} = {toml_value(value)}")
    text = "version = 1\n" + "".join(
        f"[{table}]\n" + "".join(f"{line}\n" for line in lines) for table, lines in tables.items()
    )
    path.write_text(text + garbage, encoding="utf-8", errors="surrogatepass")
    try:
        settings = load_settings(path, {"watch_dir": folder})
    except StreamDenoiseError:
        return
    assert settings.watch.settle_seconds > 0 and settings.watch.max_attempts >= 1
