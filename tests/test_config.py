"""Settings: TOML file plus flags, validation, errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdenoise.config import load_config
from streamdenoise.errors import FileProblem


def test_flags_override_the_file(tmp_path: Path) -> None:
    config_file = tmp_path / "session.toml"
    config_file.write_text(
        'watch_dir = "/data/in"\nout_dir = "/data/out"\nsettle_seconds = 5\n'
        'include = ["*.mrc"]\norder = "newest"\n'
    )
    config = load_config(config_file, {"settle_seconds": 1.5, "device": None})
    assert config.watch_dir == Path("/data/in") and config.output_dir == Path("/data/out")
    assert config.settle_seconds == 1.5 and config.include == ("*.mrc",)
    assert config.order == "newest" and config.device == "auto"


def test_defaults_and_errors(tmp_path: Path) -> None:
    config = load_config(None, {"watch_dir": tmp_path})
    assert config.output_dir == tmp_path / "streamdenoise"
    with pytest.raises(ValueError, match="no directory to watch"):
        load_config(None, {})
    with pytest.raises(ValueError, match="order"):
        load_config(None, {"watch_dir": tmp_path, "order": "random"})
    with pytest.raises(ValueError, match="not both"):
        load_config(None, {"watch_dir": tmp_path, "bin": 4, "pixel_size": 4.0})
    bad = tmp_path / "bad.toml"
    bad.write_text('watch_dir = "x"\nsettle = 3\n')
    with pytest.raises(FileProblem, match="unknown setting") as info:
        load_config(bad, {})
    assert str(bad) in str(info.value)
    broken = tmp_path / "broken.toml"
    broken.write_text("watch_dir = \n")
    with pytest.raises(FileProblem, match="cannot read the configuration"):
        load_config(broken, {})


def test_the_retired_faithful_mode_is_refused_with_its_reason(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'watch_dir = "{tmp_path}"\nmode = "live"\n')
    assert load_config(config, {}).watch_dir == tmp_path  # the only mode, still accepted
    config.write_text(f'watch_dir = "{tmp_path}"\nmode = "faithful"\n')
    with pytest.raises(ValueError, match=r"faithful.*was removed.*15 e"):
        load_config(config, {})


def test_session_adaptation_settings(tmp_path: Path) -> None:
    config = load_config(None, {"watch_dir": tmp_path})
    assert config.adapt_after == 0 and config.adapt_steps == 300  # off by default
    assert load_config(None, {"watch_dir": tmp_path, "adapt_after": 20}).adapt_after == 20
    with pytest.raises(ValueError, match=r"adapt_after must be 0 \(off\) or at least 2"):
        load_config(None, {"watch_dir": tmp_path, "adapt_after": 1})
    with pytest.raises(ValueError, match="adapt_steps"):
        load_config(None, {"watch_dir": tmp_path, "adapt_steps": 0})


def test_optics_and_picks_settings_from_the_file(tmp_path: Path) -> None:
    config_file = tmp_path / "session.toml"
    config_file.write_text(
        f'watch_dir = "{tmp_path}"\nvoltage_kv = 200\nspherical_aberration_mm = 1.4\n'
        f'amplitude_contrast = 0.07\nrelion_project = "{tmp_path}"\npicks_frame = "both"\n'
    )
    config = load_config(config_file, {})
    optics = config.optics()
    assert (optics.voltage_kv, optics.spherical_aberration_mm) == (200, 1.4)
    assert optics.amplitude_contrast == 0.07 and optics.project == tmp_path
    assert config.picks_frame == "both" and optics.optics_from is None
    with pytest.raises(ValueError, match="picks frame"):
        load_config(None, {"watch_dir": tmp_path, "picks_frame": "binned"})
    with pytest.raises(ValueError, match="Cs"):
        load_config(None, {"watch_dir": tmp_path, "spherical_aberration_mm": -1})
