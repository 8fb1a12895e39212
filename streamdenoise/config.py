"""One frozen, validated settings object for the live daemon (TOML file + flags)."""

from __future__ import annotations

import math
import sys
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from streamdenoise.errors import FileProblem, SettingsError
from streamdenoise.io.relion import OpticsSettings
from streamdenoise.model.tiling import DEFAULT_MAX_TILE
from streamdenoise.outputs import pick_frames

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ORDERS = ("oldest", "newest", "alternate")


@dataclass(frozen=True)
class WatchConfig:
    """Settings of `streamdenoise watch`. Units: seconds, Å, pixels.

    watch_dir: where motion-corrected micrographs appear; out_dir: outputs (default
    WATCH_DIR/streamdenoise); state_dir: journal, status.json and lock (default out_dir;
    keep it on a local disk, apart from the outputs if those may fill up); settle_seconds:
    a file must keep its size and mtime this long (network mounts get 3× this);
    timeout_seconds: a file that never becomes a complete micrograph is quarantined after
    this long unchanged; order: which
    ready micrographs go first; bin / pixel_size: working pixel size (default: the model's);
    particle_diameter: Å, for the picking statistics (default: from `reference`, else
    estimated from the first micrographs, 150 Å until then); reference: a density map
    (.mrc/.map) or atomic model (.pdb/.cif) whose diameter the statistics use; statistics: compute
    them and write candidate coordinates; readiness: verdict thresholds (a TOML table,
    keys of `ReadinessThresholds`); tile: largest tile side in working pixels; compile:
    torch.compile the model (None: when this machine can, see
    `streamdenoise.engine.batches.compile_by_default`); voltage_kv, spherical_aberration_mm,
    amplitude_contrast: the optics table of the micrographs STAR (kV, mm, fraction), unless
    optics_from names an upstream micrographs STAR (e.g. RELION's
    corrected_micrographs.star) to copy it from; relion_project: the RELION project
    directory the STAR files' paths are written relative to (default: absolute paths);
    picks_frame: candidate coordinates in the input micrograph's pixels ("input"), the
    denoised micrograph's ("denoised") or "both".
    """

    watch_dir: Path
    out_dir: Path | None = None
    state_dir: Path | None = None
    model: Path | None = None
    device: str = "auto"
    include: tuple[str, ...] = ("*.mrc", "*.tif", "*.tiff")
    exclude: tuple[str, ...] = ()
    recursive: bool = True
    polling: bool | None = None
    settle_seconds: float = 2.0
    rescan_interval: float = 30.0
    timeout_seconds: float = 600.0
    max_attempts: int = 3
    input_pixel_size: float | None = None
    bin: float | None = None
    pixel_size: float | None = None
    batch_size: int | None = None
    max_micrographs_per_batch: int = 4
    tile: int = DEFAULT_MAX_TILE
    overlap: int = 32
    float16: bool = False
    suffix: str = ""
    zarr: bool = True
    thumbnails: bool = True
    order: str = "oldest"
    headless: bool | None = None
    status_interval: float = 10.0
    particle_diameter: float | None = None
    reference: Path | None = None
    statistics: bool = True
    readiness: dict[str, float] = field(default_factory=dict)
    compile: bool | None = None
    guard: bool = True
    background_scale: float | None = None
    adapt_after: int = 0
    adapt_steps: int = 300
    stop_file: str = "STOP"
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    optics_from: Path | None = None
    relion_project: Path | None = None
    picks_frame: str = "input"

    def __post_init__(self) -> None:
        self.optics()  # raises ValueError for impossible optics
        pick_frames(self.picks_frame)  # and for an unknown frame
        if self.order not in ORDERS:
            raise SettingsError(f"order must be one of {ORDERS}, got {self.order!r}")
        for name in ("settle_seconds", "rescan_interval", "timeout_seconds", "status_interval"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive, got {getattr(self, name)}")
        if self.adapt_after == 1 or self.adapt_after < 0:
            raise SettingsError(
                f"adapt_after must be 0 (off) or at least 2 micrographs, got {self.adapt_after}"
            )
        if self.adapt_steps < 1:
            raise SettingsError(f"adapt_steps must be at least 1, got {self.adapt_steps}")
        too_small = self.batch_size is not None and self.batch_size < 1
        if too_small or self.max_micrographs_per_batch < 1 or self.max_attempts < 1:
            raise SettingsError("batch sizes and max_attempts must be at least 1")
        if self.bin is not None and self.pixel_size is not None:
            raise SettingsError("give bin or pixel_size, not both")
        if self.particle_diameter is not None and self.particle_diameter <= 0:
            raise SettingsError(f"particle diameter must be positive, got {self.particle_diameter}")

    def optics(self) -> OpticsSettings:
        """The optics table's settings and the RELION project directory."""
        return OpticsSettings(
            self.voltage_kv,
            self.spherical_aberration_mm,
            self.amplitude_contrast,
            self.optics_from,
            self.relion_project,
        )

    @property
    def output_dir(self) -> Path:
        """The output directory (default: WATCH_DIR/streamdenoise, excluded from watching)."""
        return self.out_dir if self.out_dir is not None else self.watch_dir / "streamdenoise"


RETIRED_MODE = (
    'mode = "faithful" was removed: it lowered picking AP below the raw micrographs at '
    '15 e⁻/Å² (benchmarks/RESULTS.md, "Quality"); delete the mode setting ("live", the only '
    "mode, is still accepted)"
)


def load_config(path: Path | None, overrides: dict[str, Any]) -> WatchConfig:
    """Settings from a TOML file (optional) with `overrides` (flags, None = not given) on top.

    Unknown keys in the file are an error naming the file and the key.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise FileProblem(path, f"cannot read the configuration: {error}") from error
        if values.pop("mode", "live") != "live":
            raise FileProblem(path, RETIRED_MODE)
        known = {f.name: f for f in fields(WatchConfig)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise FileProblem(path, f"unknown setting(s): {', '.join(unknown)}")
        hints = typing.get_type_hints(WatchConfig)
        for key, value in values.items():
            if not _accepts(hints[key], value):
                raise FileProblem(path, f"{key} = {value!r}: expected {known[key].type}")
    values.update({key: value for key, value in overrides.items() if value is not None})
    if "watch_dir" not in values:
        raise SettingsError("no directory to watch: give DIR or watch_dir in the configuration")
    paths = ("watch_dir", "out_dir", "state_dir", "model", "optics_from", "relion_project")
    for key in (*paths, "reference"):
        if values.get(key) is not None:
            values[key] = Path(values[key]).expanduser()
    for key in ("include", "exclude"):
        if key in values:
            values[key] = tuple(values[key])
    config = WatchConfig(**values)
    if config.out_dir is None:
        config = replace(config, out_dir=config.output_dir)
    return config


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a TOML `value` fits the settings type `hint` (paths are strings, numbers
    finite, a float setting takes an integer, tuples are arrays, None is never in TOML)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        allowed = (int,) if hint is int else (int, float)
        return isinstance(value, allowed) and not isinstance(value, bool) and math.isfinite(value)
    if hint in (str, Path):
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, list) and all(_accepts(args[0], item) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _accepts(args[0], k) and _accepts(args[1], v) for k, v in value.items()
        )
    return False
