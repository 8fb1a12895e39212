"""Candidate picks in the frame a user extracts from: the input micrograph's pixels by
default, the denoised (binned) micrograph's when asked, on a real simulated micrograph
denoised with the shipped model at working binning 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from readers import assert_valid_mrc, star_tables, strict_json

from streamdenoise.acquisition import write_session
from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.model.pipeline import DenoiseSettings
from streamdenoise.outputs import OutputLayout
from streamdenoise.physics.density import load_reference
from streamdenoise.physics.session import SessionSpec
from streamdenoise.processing import OutputOptions, process_micrograph


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One 1024² micrograph at 2 Å/px denoised at the model's 4 Å/px, picks in both frames."""
    session = tmp_path_factory.mktemp("session")
    spec = SessionSpec(
        count=1, seed=7, detector="small", pixel_size=2.0, binning=1, dose=80.0,
        particle_density=4000.0, carbon_edge_fraction=0.0, aggregate_fraction=0.0,
        ice_thickness_range=(200.0, 300.0),
    )  # fmt: skip
    (source,) = write_session(session, spec, load_reference())
    loaded = load_model(default_model_path())
    layout = OutputLayout(source.parent, session / "out")
    diameter = strict_json(session / "ground_truth" / "mic_0001.json")["particle_diameter_angstrom"]
    options = OutputOptions(zarr=False, diameter_angstrom=diameter, picks_frame="both")
    results = process_micrograph(
        source, loaded.model, loaded.pixel_size, DenoiseSettings(), layout, options
    )
    truth = star_tables(session / "ground_truth" / "mic_0001_particles.star")[""]
    return {
        "layout": layout,
        "outputs": results.outputs,
        "diameter_px": diameter / 2.0,
        "truth": truth[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(),
    }


def coordinates(path: Path) -> np.ndarray:
    return star_tables(path)[""][["rlnCoordinateX", "rlnCoordinateY"]].to_numpy()


def boxes(path: Path) -> np.ndarray:
    return np.array([[int(v) for v in line.split("\t")] for line in path.read_text().splitlines()])


def test_outputs_are_recorded_relative_and_read_by_users_readers(done: dict) -> None:
    layout, outputs = done["layout"], done["outputs"]
    assert set(outputs) == {
        "mrc", "thumbnail", "sidecar",
        "picks_star", "picks_box", "picks_denoised_star", "picks_denoised_box",
    }  # fmt: skip
    assert outputs["picks_star"] == "picks/mic_0001.star"
    assert outputs["picks_denoised_star"] == "picks_denoised/mic_0001.star"
    assert_valid_mrc(layout.resolve(outputs["mrc"]))
    assert strict_json(layout.resolve(outputs["sidecar"]))["pixel_size_angstrom"] == 4.0


def test_input_frame_picks_are_the_denoised_ones_scaled_and_land_on_particles(done) -> None:
    layout, outputs = done["layout"], done["outputs"]
    original = coordinates(layout.resolve(outputs["picks_star"]))
    binned = coordinates(layout.resolve(outputs["picks_denoised_star"]))
    assert len(original) >= 10
    assert np.allclose(original, 2 * binned, atol=1e-5)  # 1024 / 512 on both axes
    distances = np.sqrt(((original[:, None] - done["truth"][None]) ** 2).sum(-1)).min(1)
    assert (distances <= done["diameter_px"] / 4).mean() >= 0.95
    binned_distances = np.sqrt(((binned[:, None] - done["truth"][None]) ** 2).sum(-1)).min(1)
    assert (binned_distances <= done["diameter_px"] / 4).mean() < 0.5  # the wrong frame


def test_box_files_have_a_box_per_pick_in_their_own_pixels(done: dict) -> None:
    layout, outputs = done["layout"], done["outputs"]
    for frame, scale in (("picks", 1.0), ("picks_denoised", 0.5)):
        rows = boxes(layout.resolve(outputs[f"{frame}_box"]))
        centres = coordinates(layout.resolve(outputs[f"{frame}_star"]))
        size = round(1.5 * done["diameter_px"] * scale)
        assert (rows[:, 2:] == size).all()
        assert np.array_equal(rows[:, :2], np.floor(centres - size / 2 + 0.5).astype(int))
