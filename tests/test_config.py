"""Settings: one typed configuration (nested TOML tables + flags), validated by pydantic,
with errors that name the file, the key, the expected type and the value given."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from streamdenoise.config import TABLE_OF, TABLES, Settings, load_settings
from streamdenoise.errors import FileProblem, SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

EXAMPLE = Path(__file__).parents[1] / "systemd" / "example.toml"


def settings_file(tmp_path: Path, text: str) -> Path:
    """A settings file of version 1 with the tables `text`."""
    path = tmp_path / "session.toml"
    path.write_text("version = 1\n" + text)
    return path


def refused(path: Path) -> str:
    """The one-line reason `load_settings` refuses the file `path` (which it names)."""
    with pytest.raises(FileProblem) as info:
        load_settings(path, {})
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


@pytest.mark.parametrize(
    "table, line, named",
    [
        # the four bugs of the flat settings: each is now an error naming key and type
        ("watch", 'include = "*.mrc"', "watch.include = '*.mrc': expected an array of strings"),
        ("watch", 'exclude = "*_PS.mrc"', "watch.exclude = '*_PS.mrc': expected an array of"),
        ("watch", 'polling = "false"', "watch.polling = 'false': expected true or false"),
        ("watch", 'settle_seconds = "five"', "watch.settle_seconds = 'five': expected a number"),
        # other wrong types, each named with the type expected
        ("watch", "include = [1]", "watch.include[0] = 1: expected a string"),
        ("denoise", "tile = 3.5", "denoise.tile = 3.5: expected an integer"),
        ("denoise", "bin = true", "denoise.bin = True: expected a number"),
        ("outputs", "out_dir = 3", "outputs.out_dir = 3: expected a path (a string)"),
        ("outputs", 'picks_frame = "binned"', "expected one of 'input', 'denoised', 'both'"),
        ("watch", 'order = "random"', "watch.order = 'random': expected one of 'oldest'"),
        ("denoise", 'precision = "half"', "denoise.precision = 'half': expected one of 'auto'"),
        ("display", "status_interval = nan", "display.status_interval = nan: should be a finite"),
        ("readiness.thresholds", 'min_cnr = "x"', "readiness.thresholds.min_cnr = 'x': expected"),
        ("watch", "settle_seconds = -1", "watch.settle_seconds = -1: should be greater than 0"),
    ],
)
def test_a_wrong_type_is_an_error_naming_file_key_and_expected_type(
    tmp_path: Path, table: str, line: str, named: str
) -> None:
    assert named in refused(settings_file(tmp_path, f"[{table}]\n{line}\n"))


def test_unknown_keys_and_tables_are_named_with_the_file(tmp_path: Path) -> None:
    message = refused(settings_file(tmp_path, "[watch]\nsettle = 3\n"))
    assert "unknown key watch.settle" in message and "settle_seconds" in message  # known keys
    assert "unknown key nonsense" in refused(settings_file(tmp_path, "[nonsense]\nx = 1\n"))
    message = refused(settings_file(tmp_path, "[readiness.thresholds]\nmin_crn = 2\n"))
    assert "unknown readiness threshold(s): min_crn" in message


def test_the_flat_format_is_refused_with_how_to_convert(tmp_path: Path) -> None:
    flat = tmp_path / "flat.toml"
    flat.write_text(
        'watch_dir = "/data"\nbin = 2\nfloat16 = true\nmode = "faithful"\n'
        "spherical_aberration_mm = 1.4\n"
    )
    message = refused(flat)
    assert "add version = 1" in message
    assert "watch_dir → [watch], bin → [denoise], float16 → [outputs], delete mode" in message
    assert "spherical_aberration_mm → [outputs] as cs_mm" in message
    flat.write_text("[watch]\nsettle_seconds = 3\n")
    assert "no version key: add version = 1" in refused(flat)
    flat.write_text("version = 2\n")
    assert "version = 2: expected one of 1" in refused(flat)
    flat.write_text("version = \n")
    assert "cannot read the configuration" in refused(flat)


def test_nested_tables_round_trip(tmp_path: Path) -> None:
    text = (
        '[watch]\nwatch_dir = "/data/in"\ninclude = ["*.mrc"]\nexclude = ["*_PS.mrc"]\n'
        'polling = false\nsettle_seconds = 5\norder = "newest"\nadapt_after = 20\n'
        '[denoise]\nbin = 2\ndevice = "cpu"\nguard = false\ntile = 256\n'
        '[outputs]\nout_dir = "/data/out"\nfloat16 = true\npicks_frame = "both"\n'
        "voltage_kv = 200\ncs_mm = 1.4\namplitude_contrast = 0.07\n"
        "[readiness]\nparticle_diameter = 120.0\n[readiness.thresholds]\nmin_cnr = 2.5\n"
        "[display]\nheadless = true\nstatus_interval = 5\n"
    )
    path = settings_file(tmp_path, text)
    settings = load_settings(path, {})
    assert settings.watch.include == ("*.mrc",) and settings.watch.exclude == ("*_PS.mrc",)
    assert settings.watch.polling is False and settings.watch.settle_seconds == 5.0
    assert settings.denoise.settings().bin_factor == 2 and not settings.denoise.settings().guard
    assert settings.output_dir == Path("/data/out") and settings.watch_dir == Path("/data/in")
    optics = settings.outputs.optics()
    assert (optics.voltage_kv, optics.spherical_aberration_mm) == (200, 1.4)
    options = settings.output_options("m")
    assert options.float16 and options.picks_frame == "both" and options.diameter_angstrom == 120
    assert options.thresholds.min_cnr == 2.5 and options.thresholds.min_density_per_um2 == 300
    dumped = settings.model_dump(mode="json")
    written = tomllib.loads(path.read_text())
    for table, values in written.items():
        if isinstance(values, dict):
            for key, value in values.items():
                expected = value if not isinstance(value, list) else list(value)
                assert dumped[table][key] == expected, f"{table}.{key}"
    assert Settings.model_validate(settings.model_dump()) == settings


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = settings_file(
        tmp_path, '[watch]\nwatch_dir = "/data/in"\nsettle_seconds = 5\n[denoise]\nbin = 2\n'
    )
    settings = load_settings(path, {"settle_seconds": 1.5, "device": None, "float16": True})
    assert settings.watch.settle_seconds == 1.5  # the flag wins
    assert settings.denoise.device == "auto"  # None: not given, the default stays
    assert settings.denoise.bin == 2 and settings.outputs.float16 is True
    assert settings.output_dir == Path("/data/in_streamdenoise")  # beside, not inside
    with pytest.raises(FileProblem, match="not both"):  # a flag meets the file's bin
        load_settings(path, {"pixel_size": 4.0})
    with pytest.raises(SettingsError, match=r"--picks-frame = 'x': expected one of"):
        load_settings(None, {"picks_frame": "x"})  # a flag is named as the flag


def test_defaults_and_cross_checks(tmp_path: Path) -> None:
    settings = load_settings(None, {"watch_dir": tmp_path})
    assert settings.output_dir == tmp_path.with_name(f"{tmp_path.name}_streamdenoise")
    assert settings.watch.adapt_after == 0 and settings.watch.adapt_steps == 300
    assert settings.watch.include == ("*.mrc", "*.tif", "*.tiff")
    assert settings.denoise.precision == "auto" and settings.denoise.settings().dtype is None
    chosen = load_settings(None, {"watch_dir": tmp_path, "precision": "float32"})
    assert chosen.denoise.settings().dtype == torch.float32
    with pytest.raises(SettingsError, match="no directory to watch"):
        _ = load_settings(None, {}).watch_dir
    with pytest.raises(SettingsError, match="no output directory"):
        _ = load_settings(None, {}).output_dir
    with pytest.raises(SettingsError, match=r"adapt_after must be 0 \(off\) or at least 2"):
        load_settings(None, {"adapt_after": 1})
    with pytest.raises(SettingsError, match="Cs must be"):
        load_settings(None, {"cs_mm": -1.0})
    with pytest.raises(SettingsError, match="overlap"):
        load_settings(None, {"tile": 64, "overlap": 64})


def test_the_statistics_diameter_and_reference_reach_every_command(tmp_path: Path) -> None:
    """The statistics' diameter and its source, as `batch` and `denoise --mirror` get them
    (`output_options`) and `watch` starts with: given, else the reference's, else the
    default; the reference itself goes along (it picks the candidates), to the Dask
    batch's workers too."""
    from streamdenoise.distributed import BatchConfig
    from streamdenoise.physics.density import builtin_reference_path, load_reference

    reference = builtin_reference_path()
    default = load_settings(None, {}).output_options("m")
    assert (default.diameter_angstrom, default.diameter_source) == (150.0, "default (150 Å)")
    assert default.reference is None
    referenced = load_settings(None, {"reference": reference}).output_options("m")
    assert referenced.diameter_angstrom == pytest.approx(load_reference(reference).diameter)
    assert referenced.diameter_source == f"reference {reference.name}"
    assert referenced.reference == reference
    given = load_settings(None, {"reference": reference, "particle_diameter": 90.0})
    assert given.output_options("m").diameter_angstrom == 90.0
    assert given.readiness.known_diameter() == (90.0, "given")
    assert load_settings(None, {}).readiness.known_diameter() is None
    assert load_settings(None, {"statistics": False}).output_options("m").diameter_angstrom is None
    batch = BatchConfig.from_settings(
        load_settings(None, {"reference": reference, "out_dir": tmp_path}), tmp_path
    )
    assert batch.reference == reference and batch.diameter_source == f"reference {reference.name}"


def test_every_key_is_in_one_table_only() -> None:
    """Flags map to their table by name, so no key may stand in two tables."""
    assert sum(len(model.model_fields) for model in TABLES.values()) == len(TABLE_OF)
    assert set(TABLES) == {"watch", "denoise", "outputs", "readiness", "display"}


def test_the_example_file_loads() -> None:
    settings = load_settings(EXAMPLE, {})
    assert settings.display.headless is True and settings.watch.polling is True
    assert settings.output_dir == Path("/data/krios/2026-11-25/denoised")
    assert settings.watch.exclude == ("*_PS.mrc", "*gain*")
    assert settings.denoise.bin == 2 and settings.readiness.particle_diameter == 150.0
