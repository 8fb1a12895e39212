"""The micrographs STAR and coordinate lists RELION reads, checked with starfile and gemmi."""

from __future__ import annotations

from pathlib import Path

import pytest
from readers import star_tables

from streamdenoise.errors import FileProblem
from streamdenoise.io.relion import (
    MicrographRow,
    OpticsSettings,
    read_upstream,
    relion_path,
    write_coordinate_list,
    write_micrographs_star,
)

UPSTREAM = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographOriginalPixelSize #3
_rlnVoltage #4
_rlnSphericalAberration #5
_rlnAmplitudeContrast #6
_rlnMicrographPixelSize #7
grid1 1 0.830000 200.000000 1.400000 0.100000 0.830000
grid2 2 0.830000 300.000000 2.700000 0.070000 0.830000

# version 30001

data_micrographs

loop_
_rlnMicrographName #1
_rlnOpticsGroup #2
MotionCorr/job002/Movies/a.mrc 1
MotionCorr/job002/Movies/b.mrc 2
"""


def test_optics_from_the_settings_with_paths_relative_to_the_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    out = project / "External" / "job003"
    rows = [
        MicrographRow(out / "denoised" / "a.mrc", 4.0, tmp_path / "in" / "a.mrc"),
        MicrographRow(out / "denoised" / "b.mrc", 4.0, tmp_path / "in" / "b.mrc"),
    ]
    settings = OpticsSettings(200.0, 1.4, 0.07, project=project)
    write_micrographs_star(out / "micrographs.star", rows, settings)
    text = (out / "micrographs.star").read_text()
    assert text.count("# version 30001") == 2
    tables = star_tables(out / "micrographs.star")
    optics = tables["optics"].iloc[0]
    assert optics["rlnOpticsGroupName"] == "opticsGroup1" and optics["rlnOpticsGroup"] == 1
    assert (optics["rlnVoltage"], optics["rlnSphericalAberration"]) == (200.0, 1.4)
    assert optics["rlnAmplitudeContrast"] == 0.07 and optics["rlnMicrographPixelSize"] == 4.0
    assert list(tables["micrographs"]["rlnMicrographName"]) == [
        "External/job003/denoised/a.mrc",
        "External/job003/denoised/b.mrc",
    ]
    write_micrographs_star(out / "absolute.star", rows, OpticsSettings())
    names = star_tables(out / "absolute.star")["micrographs"]["rlnMicrographName"]
    assert list(names) == [str(row.mrc) for row in rows]


def test_optics_copied_from_upstream_keep_each_micrographs_group(tmp_path: Path) -> None:
    upstream = tmp_path / "corrected_micrographs.star"
    upstream.write_text(UPSTREAM)
    rows = [
        MicrographRow(tmp_path / "den" / "b.mrc", 3.32, tmp_path / "Movies" / "b.mrc"),
        MicrographRow(tmp_path / "den" / "a.mrc", 3.32, tmp_path / "Movies" / "a.mrc"),
        MicrographRow(tmp_path / "den" / "new.mrc", 3.32, tmp_path / "Movies" / "new.mrc"),
    ]
    write_micrographs_star(tmp_path / "m.star", rows, OpticsSettings(optics_from=upstream))
    tables = star_tables(tmp_path / "m.star")
    optics = tables["optics"]
    assert list(optics["rlnOpticsGroupName"]) == ["grid2", "grid1"]  # in order of use
    assert list(optics["rlnOpticsGroup"]) == [1, 2]
    assert list(optics["rlnVoltage"]) == [300.0, 200.0]
    assert list(optics["rlnMicrographPixelSize"]) == [3.32, 3.32]  # the denoised pixel size
    assert list(optics["rlnMicrographOriginalPixelSize"]) == [0.83, 0.83]
    # b is in upstream group 2, a in 1; a micrograph not (yet) listed upstream gets group 1
    assert list(tables["micrographs"]["rlnOpticsGroup"]) == [1, 2, 2]


def test_unusable_upstream_files_are_named_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "old.star"
    path.write_text("data_\nloop_\n_rlnMicrographName #1\na.mrc\n")
    with pytest.raises(FileProblem, match=r"old\.star: no data_optics table"):
        read_upstream(path)
    path.write_text(UPSTREAM.replace("_rlnSphericalAberration #5", "_rlnCs #5"))
    with pytest.raises(FileProblem, match="lacks _rlnSphericalAberration"):
        read_upstream(path)
    with pytest.raises(FileProblem, match="no such file"):
        read_upstream(tmp_path / "missing.star")
    with pytest.raises(ValueError, match="voltage"):
        OpticsSettings(voltage_kv=0)
    with pytest.raises(ValueError, match="amplitude contrast"):
        OpticsSettings(amplitude_contrast=1.5)


def test_coordinate_list_names_micrographs_and_their_coordinate_files(tmp_path: Path) -> None:
    project = tmp_path / "p"
    pairs = [(project / "Movies" / "a.mrc", project / "out" / "picks" / "a.star")]
    write_coordinate_list(project / "out" / "coordinates.star", pairs, project)
    table = star_tables(project / "out" / "coordinates.star")["coordinate_files"]
    assert list(table["rlnMicrographName"]) == ["Movies/a.mrc"]
    assert list(table["rlnMicrographCoordinates"]) == ["out/picks/a.star"]
    assert relion_path(tmp_path / "x.mrc", project) == "../x.mrc"
    assert relion_path("x.mrc", None) == str(Path("x.mrc").resolve())
