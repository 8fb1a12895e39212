"""RELION STAR files: writing, reading our own and RELION's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamdenoise.errors import FileProblem
from streamdenoise.io import read_star, write_star_atomic
from streamdenoise.io.star import format_star

RELION_STAR = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographPixelSize #3
opticsGroup1            1     0.830000

# version 30001

data_micrographs

loop_
_rlnMicrographName #1
_rlnOpticsGroup #2
MotionCorr/job002/Movies/FoilHole_1_Data.mrc            1
'MotionCorr/job002/Movies/with space.mrc'            1

data_general

_rlnImageSizeX                         4096
_rlnMotionModelVersion                    1
"""


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "coords.star"
    write_star_atomic(
        path,
        {
            "": {"_rlnCoordinateX": [1.5, np.float32(2.25)], "rlnCoordinateY": [3.0, 4e-5]},
            "micrographs": {
                "_rlnMicrographName": ["a b.mrc", "_odd.mrc"],
                "_rlnIndex": [1, np.int64(2)],
                "_rlnFlag": [True, np.bool_(False)],
            },
        },
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["coords.star"]
    text = path.read_text()
    assert "_rlnCoordinateX #1" in text and "_rlnCoordinateY #2" in text
    blocks = read_star(path)
    assert blocks[""] == {
        "_rlnCoordinateX": ["1.500000", "2.250000"],
        "_rlnCoordinateY": ["3.000000", "4.000000e-05"],
    }
    assert blocks["micrographs"] == {
        "_rlnMicrographName": ["a b.mrc", "_odd.mrc"],
        "_rlnIndex": ["1", "2"],
        "_rlnFlag": ["1", "0"],
    }
    assert [float(v) for v in blocks[""]["_rlnCoordinateY"]] == [3.0, 4e-5]


def test_empty_loop_and_empty_string() -> None:
    text = format_star({"": {"_rlnCoordinateX": [], "_rlnCoordinateY": []}, "x": {"_a": [""]}})
    assert 'data_x\n\nloop_\n_a #1\n""\n' in text


def test_reads_relion_files(tmp_path: Path) -> None:
    path = tmp_path / "micrographs_ctf.star"
    path.write_text(RELION_STAR)
    blocks = read_star(path)
    assert blocks["optics"]["_rlnMicrographPixelSize"] == ["0.830000"]
    assert blocks["micrographs"]["_rlnMicrographName"] == [
        "MotionCorr/job002/Movies/FoilHole_1_Data.mrc",
        "MotionCorr/job002/Movies/with space.mrc",
    ]
    assert blocks["general"] == {"_rlnImageSizeX": ["4096"], "_rlnMotionModelVersion": ["1"]}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("data_\nloop_\n_rlnA #1\n_rlnB #2\n1 2 3\n", "line 5: 3 values for 2 columns"),
        ("loop_\n_rlnA #1\n1\n", "line 1: 'loop_' before any data_ block"),
        ("data_\n_rlnA\n", "line 2: label _rlnA needs exactly one value"),
        ("data_\n1 2\n", "line 2: unexpected '1 2'"),
    ],
)
def test_malformed_files_name_the_file_and_line(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "broken.star"
    path.write_text(text)
    with pytest.raises(FileProblem) as info:
        read_star(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and reason in str(info.value), str(info.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(FileProblem, match="no such file"):
        read_star(tmp_path / "absent.star")
    binary = tmp_path / "binary.star"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(FileProblem, match="not UTF-8"):
        read_star(binary)


def test_bad_tables_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        write_star_atomic(tmp_path / "x.star", {"": {"_a": [1], "_b": [1, 2]}})
    with pytest.raises(ValueError, match="span lines"):
        write_star_atomic(tmp_path / "x.star", {"": {"_a": ["two\nlines"]}})
    assert list(tmp_path.iterdir()) == []
