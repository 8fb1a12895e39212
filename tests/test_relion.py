"""The hand-off to RELION, run with RELION itself (Debian's `relion` package).

A simulated session laid out as a RELION project (MotionCorr/job002/ with its
corrected_micrographs.star) is watched by the daemon, in its own process; RELION's
Laplacian-of-Gaussian autopick then runs on our micrographs STAR, and RELION's extraction
runs on the motion-corrected (input) micrographs with our picks. Extracted particles must
sit on the simulator's true particle centres, at every working binning.

RELION 3.1 (Debian's) finds coordinate files with --coord_dir/--coord_suffix; RELION 4/5
read the coordinate list (OUT/coordinates.star, `--coord_list`), which is checked to name
the same micrographs and files.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from readers import assert_valid_mrc, star_tables, strict_json

RELION = [shutil.which(name) for name in ("relion_autopick", "relion_preprocess")]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(RELION),
        reason="RELION is not installed (apt-get install relion): the hand-off to RELION "
        "is not tested here",
    ),
]
EXECUTABLE = str(Path(sys.executable).with_name("streamdenoise"))
COUNT = 2
MOTIONCORR = "MotionCorr/job002"
OUT = "External/job003"
CORRECTED = """
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
opticsGroup1 1 {pixel:.6f} 300.000000 2.700000 0.070000 {pixel:.6f}

# version 30001

data_micrographs

loop_
_rlnMicrographName #1
_rlnOpticsGroup #2
{rows}
"""


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-2000:]}{result.stderr}"
    return result


def nearest(points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Distance (N,) from each of `points` (N, 2) to its nearest row of `truth` (M, 2)."""
    return np.sqrt(((points[:, None, :] - truth[None, :, :]) ** 2).sum(-1)).min(axis=1)


def within(points_by_micrograph: dict[str, np.ndarray], truth: dict[str, np.ndarray], radius):
    """Share of all points within `radius` of a true centre of their micrograph."""
    distances = np.concatenate(
        [nearest(points, truth[name]) for name, points in points_by_micrograph.items()]
    )
    return float((distances <= radius).mean()), len(distances)


@pytest.fixture(scope="module", params=[1, 2], ids=["bin1", "bin2"])
def session(request, tmp_path_factory) -> dict:
    """A RELION project whose MotionCorr job holds simulated micrographs that the daemon
    denoised at working binning `param` (the model's 4 Å/px from inputs at 4/param Å/px)."""
    binning = request.param
    project = tmp_path_factory.mktemp(f"relion_bin{binning}")
    job = project / MOTIONCORR
    simulated = [EXECUTABLE, "simulate", str(job), "-n", str(COUNT), "--detector", "small"]
    simulated += [
        "--detector-pixel-size",
        "2",
        "--bin",
        str(3 - binning),
        "--seed",
        str(10 + binning),
    ]
    simulated += ["--particle-density", "4000", "--carbon-edge-fraction", "0"]
    simulated += ["--dose", "80", "--ice-thickness", "200:300"]
    run([*simulated, "--aggregate-fraction", "0"], project)
    truth_record = strict_json(job / "ground_truth" / "mic_0001.json")
    pixel = truth_record["params"]["pixel_size"]
    diameter = truth_record["particle_diameter_angstrom"]
    names = [f"{MOTIONCORR}/micrographs/mic_{i + 1:04d}.mrc" for i in range(COUNT)]
    (job / "corrected_micrographs.star").write_text(
        CORRECTED.format(pixel=pixel, rows="\n".join(f"{n} 1" for n in names))
    )
    out = project / OUT
    log_path = project / "daemon.log"
    with open(log_path, "w") as log:  # the child keeps a copy
        daemon = subprocess.Popen(
            [
                EXECUTABLE, "watch", str(job), "--out", str(out), "--exclude", "*_clean.mrc",
                "--device", "cpu", "--headless", "--no-compile", "--settle-seconds", "0.5",
                "--status-interval", "1", "--particle-diameter", f"{diameter:.1f}",
                "--relion-project", str(project),
                "--optics-from", str(job / "corrected_micrographs.star"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        end = time.monotonic() + 240
        while time.monotonic() < end:
            try:
                if json.loads((out / "status.json").read_text()).get("done") == COUNT:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    truth = {
        name: star_tables(job / "ground_truth" / f"{Path(name).stem}_particles.star")[""][
            ["rlnCoordinateX", "rlnCoordinateY"]
        ].to_numpy()
        for name in names
    }
    return {
        "binning": binning,
        "project": project,
        "out": out,
        "names": names,
        "pixel": pixel,
        "diameter": diameter,
        "truth": truth,
    }


def test_outputs_read_by_the_users_readers(session: dict) -> None:
    out, project = session["out"], session["project"]
    status = strict_json(out / "status.json")
    assert status["done"] == COUNT and status["state"] == "stopped"
    tables = star_tables(out / "micrographs_denoised.star")
    optics, micrographs = tables["optics"], tables["micrographs"]
    assert optics.loc[0, "rlnMicrographPixelSize"] == pytest.approx(4.0)
    assert optics.loc[0, "rlnMicrographOriginalPixelSize"] == pytest.approx(session["pixel"])
    assert optics.loc[0, "rlnAmplitudeContrast"] == pytest.approx(0.07)  # from upstream
    assert (optics[["rlnVoltage", "rlnSphericalAberration"]].to_numpy() == [300, 2.7]).all()
    for name in micrographs["rlnMicrographName"]:
        assert not Path(name).is_absolute()
        assert_valid_mrc(project / name)
        assert strict_json((project / name).with_suffix(".json"))["pixel_size_angstrom"] == 4.0
    listed = star_tables(out / "coordinates.star")["coordinate_files"]
    assert sorted(listed["rlnMicrographName"]) == session["names"]  # as upstream names them
    for coordinates in listed["rlnMicrographCoordinates"]:
        assert coordinates.startswith(f"{OUT}/picks/micrographs/")
        picks = star_tables(project / coordinates)[""]
        assert len(picks) >= 5 and {"rlnCoordinateX", "rlnCoordinateY"} <= set(picks)


def test_relion_autopick_reads_our_micrographs_star(session: dict) -> None:
    project = session["project"]
    diameter = session["diameter"]
    odir = f"AutoPick/job004_bin{session['binning']}/"
    run(
        [
            *(RELION[0], "--i", f"{OUT}/micrographs_denoised.star", "--odir", odir, "--LoG"),
            *("--LoG_diam_min", f"{0.8 * diameter:.0f}", "--LoG_diam_max", f"{1.2 * diameter:.0f}"),
        ],
        project,
    )
    # RELION at 4 Å/px as our STAR says: its picks, in the denoised frame, scaled to the
    # input frame, mostly land on true particles (a wrong pixel size would not).
    scale = session["binning"]
    picked = {}
    for name in session["names"]:
        # RELION 3.1 drops the job prefix (External/job003/) from the names it writes
        path = project / odir / "denoised" / "micrographs" / f"{Path(name).stem}_autopick.star"
        table = star_tables(path)[""]
        picked[name] = table[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy() * scale
    share, count = within(picked, session["truth"], session["diameter"] / 4 / session["pixel"])
    assert count >= 10 and share >= 0.5, (share, count)


def test_relion_extracts_our_picks_from_the_input_micrographs(session: dict) -> None:
    project, pixel, diameter = session["project"], session["pixel"], session["diameter"]
    box = 2 * round(0.75 * diameter / pixel)  # even, 1.5 diameters
    part_dir = f"Extract/job005_bin{session['binning']}/"
    run(
        [
            *(RELION[1], "--i", f"{MOTIONCORR}/corrected_micrographs.star"),
            *("--coord_dir", f"{OUT}/picks/", "--coord_suffix", ".star"),
            *("--part_star", f"{part_dir}particles.star", "--part_dir", part_dir),
            *("--extract", "--extract_size", str(box), "--norm", "--bg_radius", str(box // 3)),
        ],
        project,
    )
    particles = star_tables(project / part_dir / "particles.star")["particles"]
    ours = sum(
        len(star_tables(project / OUT / "picks" / "micrographs" / f"{Path(n).stem}.star")[""])
        for n in session["names"]
    )
    assert len(particles) == ours and ours >= 20
    extracted = {
        name: group[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy()
        for name, group in particles.groupby("rlnMicrographName")
    }
    assert set(extracted) <= set(session["names"])
    share, _ = within(extracted, session["truth"], diameter / 4 / pixel)
    # The picks are the readiness candidates, cut at an estimated false-discovery rate of
    # 0.3 (streamdenoise.stats.readiness): 91.5 % of them land within D/4 of a true centre
    # here (bin1, measured 2026-12-03); in a wrong frame hardly any would.
    assert share >= 0.85, f"{share:.1%} of extracted particles within D/4 of a true centre"
    if session["binning"] > 1:  # the denoised frame's coordinates would miss them
        binned = {name: xy / session["binning"] for name, xy in extracted.items()}
        assert within(binned, session["truth"], diameter / 4 / pixel)[0] < 0.5
