"""Coordinate files: RELION STAR and EMAN/crYOLO .box round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamdenoise.io import read_star
from streamdenoise.io.picks import write_box, write_coordinates_star

COORDS = np.array([[10.25, 20.5], [300.0, 7.75], [64.0, 512.125]])
SCORES = np.array([5.5, 3.25, 1.125])


def test_star_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "mic_001_picks.star"
    write_coordinates_star(path, COORDS, SCORES)
    table = read_star(path)[""]
    assert list(table) == [
        "_rlnCoordinateX",
        "_rlnCoordinateY",
        "_rlnAutopickFigureOfMerit",
    ]
    assert np.allclose(np.array(table["_rlnCoordinateX"], dtype=float), COORDS[:, 0])
    assert np.allclose(np.array(table["_rlnCoordinateY"], dtype=float), COORDS[:, 1])
    assert np.allclose(np.array(table["_rlnAutopickFigureOfMerit"], dtype=float), SCORES)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_star_without_picks_and_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "none.star"
    write_coordinates_star(path, np.zeros((0, 2)), np.zeros(0))
    assert read_star(path)[""]["_rlnCoordinateX"] == []
    with pytest.raises(ValueError, match="3 coordinates but 2 scores"):
        write_coordinates_star(path, COORDS, SCORES[:2])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        write_coordinates_star(path, COORDS[:, :1], SCORES)
    with pytest.raises(ValueError, match="finite"):
        write_coordinates_star(path, np.array([[np.nan, 1.0]]), [1.0])


def test_box_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "mic_001.box"
    write_box(path, COORDS, 48)
    lines = path.read_text().splitlines()
    assert lines[0] == "-14\t-3\t48\t48"  # -3.5 rounds half up
    rows = np.array([[int(v) for v in line.split("\t")] for line in lines])
    assert (rows[:, 2:] == 48).all()
    assert np.abs(rows[:, :2] + 24 - COORDS).max() <= 0.5  # centres back within rounding
    write_box(path, np.zeros((0, 2)), 48)
    assert path.read_text() == ""
    with pytest.raises(ValueError, match="box size"):
        write_box(path, COORDS, 0)


def test_box_corners_round_half_up(tmp_path) -> None:
    path = tmp_path / "m.box"
    write_box(path, np.array([[100.0, 100.0], [101.0, 101.0]]), 57)
    lines = [line.split("\t") for line in path.read_text().splitlines()]
    assert [int(line[0]) for line in lines] == [72, 73]
