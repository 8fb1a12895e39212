"""The daemon's particle diameter: given, from a reference, or estimated from its first
micrographs (without running the daemon: its diameter methods on constructed images)."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
from test_stats_diameter import PIXEL, balls

from streamdenoise.config import load_settings
from streamdenoise.daemon import ESTIMATE_FROM, ModelStage
from streamdenoise.outputs import OutputLayout
from streamdenoise.processing import DEFAULT_DIAMETER, OutputOptions
from streamdenoise.sdnotify import Notifier


def daemon(tmp_path: Path, **settings: object) -> ModelStage:
    """The daemon's model stage on an empty folder, its statistics started as `load` starts
    them (without loading a model)."""
    (tmp_path / "in").mkdir(exist_ok=True)
    config = load_settings(None, {"watch_dir": tmp_path / "in", **settings})
    layout = OutputLayout(config.watch_dir, config.output_dir)
    stage = ModelStage(config, layout, Notifier(None), lambda: False)
    diameter, source = stage._initial_diameter()
    stage.output_options = OutputOptions(diameter_angstrom=diameter, diameter_source=source)
    stage._diameter_images = [] if source.startswith("default") else None
    return stage


def test_the_estimate_replaces_the_default_after_the_first_micrographs(tmp_path: Path) -> None:
    watcher = daemon(tmp_path)
    assert watcher.diameter_status() == {
        "angstrom": DEFAULT_DIAMETER,
        "source": f"default; estimating from the first {ESTIMATE_FROM} micrographs",
        "estimate": None,
    }
    images = [balls(28, 25, seed)[0] for seed in range(ESTIMATE_FROM + 1)]
    for image in images[: ESTIMATE_FROM - 1]:
        watcher.offer_for_diameter(image, PIXEL, wait=True)
    assert watcher.output_options.diameter_angstrom == DEFAULT_DIAMETER  # not yet
    watcher.offer_for_diameter(images[ESTIMATE_FROM - 1], PIXEL, wait=True)
    status = watcher.diameter_status()
    assert status["source"] == f"estimated from {ESTIMATE_FROM} micrographs"
    assert status["angstrom"] == pytest.approx(28 * PIXEL, rel=0.15)
    assert status["estimate"]["confident"] and status["estimate"]["micrographs"] == ESTIMATE_FROM
    assert watcher.output_options.diameter_source == status["source"]
    watcher.offer_for_diameter(
        images[-1], PIXEL, wait=True
    )  # estimated once: later ones are not kept
    assert watcher._diameter_images is None
    assert watcher.diameter_status() == status


def test_an_uncertain_estimate_keeps_the_default_and_says_why(tmp_path: Path) -> None:
    watcher = daemon(tmp_path)
    rng = np.random.default_rng(0)
    for _ in range(ESTIMATE_FROM):
        watcher.offer_for_diameter(rng.normal(0, 1, (256, 256)), PIXEL, wait=True)
    assert watcher.output_options.diameter_angstrom == DEFAULT_DIAMETER
    assert "is uncertain" in watcher.output_options.diameter_source


def test_given_and_reference_diameters_are_not_estimated(tmp_path: Path) -> None:
    given = daemon(tmp_path, particle_diameter=90.0)
    assert given.diameter_status() == {"angstrom": 90.0, "source": "given", "estimate": None}
    assert given._diameter_images is None
    voxel, radius = 3.0, 20  # a ball of 120 Å in a 64³ map
    zz, yy, xx = np.mgrid[:64, :64, :64] - 31.5
    with mrcfile.new(tmp_path / "ball.mrc") as mrc:
        mrc.set_data((np.sqrt(xx**2 + yy**2 + zz**2) <= radius).astype(np.float32))
        mrc.voxel_size = voxel
    referenced = daemon(tmp_path, reference=tmp_path / "ball.mrc")
    status = referenced.diameter_status()
    assert status["source"] == "reference ball.mrc"
    assert status["angstrom"] == pytest.approx(2 * radius * voxel, rel=0.1)
    both = daemon(tmp_path, particle_diameter=90.0, reference=tmp_path / "ball.mrc")
    assert both.diameter_status()["source"] == "given"  # the user's value wins
