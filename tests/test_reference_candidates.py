"""Candidates picked with the user's reference: its image through each micrograph's fitted
CTF, end to end through `process_micrograph` on a real MRC file."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from streamdenoise.engine.batches import prepare_model
from streamdenoise.model.pipeline import DenoiseSettings
from streamdenoise.model.unet import ScoreUNet, UNetConfig
from streamdenoise.outputs import OutputLayout
from streamdenoise.physics.density import builtin_reference_path, load_reference
from streamdenoise.physics.simulator import MicrographParams, simulate_micrograph
from streamdenoise.processing import OutputOptions, process_micrograph, processing_params_hash
from streamdenoise.stats.readiness import ReadinessThresholds

DEFOCUS = 15000.0  # Å


def simulated_mrc(path: Path, seed: int, **changes: object) -> tuple[Path, int]:
    """A simulated micrograph of the built-in reference (768² at 4 Å/px, 60 particles,
    40 e⁻/Å² at `DEFOCUS`, unless `changes` say otherwise) written as MRC at `path`, and
    its true particle count."""
    values: dict[str, object] = {
        "shape": (768, 768),
        "pixel_size": 4.0,
        "detector_pixel_size": 4.0,
        "dose": 40.0,
        "defocus_u": DEFOCUS,
        "defocus_v": DEFOCUS,
        "particles": 60,
        **changes,
    }
    params = MicrographParams(seed=seed, **values)
    simulated = simulate_micrograph(load_reference(), params)
    with mrcfile.new(path) as mrc:
        mrc.set_data(simulated.noisy.astype(np.float32))
        mrc.voxel_size = params.pixel_size
    return path, len(simulated.coordinates)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A simulated 4 Å/px micrograph of the built-in reference written as MRC, and its
    true particle count."""
    return simulated_mrc(tmp_path_factory.mktemp("reference") / "mic.mrc", seed=3)


def readiness_of(source: Path, options: OutputOptions, out: Path) -> dict:
    """Process `source` with an identity network and return its sidecar's readiness."""
    identity = ScoreUNet(UNetConfig(base_channels=4, channel_multipliers=(1, 2), norm_groups=0))
    layout = OutputLayout(source.parent, out)
    process_micrograph(
        source,
        prepare_model(identity, torch.device("cpu"), compile_model=False),
        4.0,
        DenoiseSettings(tile=256, overlap=16),
        layout,
        options,
    )
    sidecar = out / "denoised" / f"{source.stem}.json"
    return json.loads(sidecar.read_text())["readiness"]


def test_the_reference_picks_the_candidates_and_the_sidecar_says_so(session, tmp_path) -> None:
    source, true_count = session
    reference = builtin_reference_path()
    diameter = load_reference(reference).diameter
    with_reference = OutputOptions(diameter_angstrom=diameter, reference=reference)
    readiness = readiness_of(source, with_reference, tmp_path / "with")
    detector = readiness["candidate_detector"]
    assert detector.startswith(f"reference {reference.name} through the CTF at ")
    fitted = float(detector.split(" at ")[1].split(" µm")[0])
    assert fitted == pytest.approx(DEFOCUS / 1e4, abs=0.05)
    assert "ring correlation" in detector and "not seen" not in detector
    assert 0.5 * true_count <= readiness["candidates"] <= 1.2 * true_count
    assert not any(reason.startswith("thick ice") for reason in readiness["reasons"])
    plain_options = OutputOptions(diameter_angstrom=diameter)
    plain = readiness_of(source, plain_options, tmp_path / "without")
    assert plain["candidate_detector"] == "difference of Gaussians"
    # Only the difference of Gaussians needs the denoiser's null tiles.
    assert plain_options.denoiser_null and not with_reference.denoiser_null


def test_the_reference_is_part_of_the_parameter_hash_only_when_given(tmp_path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    settings = DenoiseSettings()
    plain = OutputOptions()
    given = OutputOptions(reference=builtin_reference_path())
    hashes = {
        processing_params_hash(model, settings, options, input_pixel_size=None, suffix="")
        for options in (plain, given)
    }
    assert len(hashes) == 2


def test_thick_ice_is_not_ready_though_the_reference_finds_its_particles(tmp_path) -> None:
    """1400 Å of ice in a 1 Å/px micrograph that the daemon bins to 4 Å/px: the matched
    filter still finds the particles, but the field's phase contrast per e⁻/Å² says the
    ice is too thick for high resolution. Measured on the binned image in counts (the crop
    keeps the mean, not the counts)."""
    source, true_count = simulated_mrc(
        tmp_path / "thick.mrc",
        seed=4,
        shape=(3072, 3072),
        pixel_size=1.0,
        detector_pixel_size=1.0,
        ice_thickness=1400.0,
    )
    reference = builtin_reference_path()
    options = OutputOptions(
        diameter_angstrom=load_reference(reference).diameter, reference=reference
    )
    readiness = readiness_of(source, options, tmp_path / "out")
    assert readiness["candidates"] >= 0.5 * true_count
    assert readiness["pixel_size"] == pytest.approx(4.0)
    assert readiness["ice_texture"] > 1.5 * ReadinessThresholds().max_ice_texture
    assert readiness["background_structure"] is not None  # measured: counts stay counts
    assert readiness["verdict"] == "not ready"
    assert any(reason.startswith("thick ice: ice texture ") for reason in readiness["reasons"])
