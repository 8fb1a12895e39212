"""One typed, validated settings object for `watch`, `batch` and `denoise` (TOML file +
flags): nested tables `[watch]`, `[denoise]`, `[outputs]`, `[readiness]`, `[display]` under
`version = 1`, checked by pydantic (strict types, unknown keys refused)."""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    Strict,
    ValidationError,
    model_validator,
)

from streamdenoise.engine.batches import PRECISIONS
from streamdenoise.errors import FileProblem, SettingsError
from streamdenoise.io.relion import OpticsSettings
from streamdenoise.model.pipeline import DenoiseSettings
from streamdenoise.model.tiling import DEFAULT_MAX_TILE
from streamdenoise.processing import DEFAULT_DIAMETER, OutputOptions
from streamdenoise.stats.readiness import ReadinessThresholds

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

VERSION = 1
PathSetting = Annotated[Path, Strict(False), AfterValidator(Path.expanduser)]
"""A path: a TOML string (or a Path from a flag), with ~ expanded."""
Globs = Annotated[tuple[str, ...], Strict(False)]
"""File name globs: a TOML array of strings (a lone string is refused, never split)."""


def _thresholds(values: dict[str, float]) -> dict[str, float]:
    """Check a `[readiness.thresholds]` table against `ReadinessThresholds`."""
    ReadinessThresholds.from_dict(values)
    return values


class Table(BaseModel):
    """A settings table: strict types (no "false" → True, no string → array), finite
    numbers, unknown keys refused, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class WatchTable(Table):
    """`[watch]`: what to take from where and when. watch_dir: where motion-corrected
    micrographs appear; include/exclude: globs on file names (case-insensitive); polling:
    poll instead of inotify (unset: poll on network mounts); settle_seconds: a file must
    keep its size and mtime this long (×3 on network mounts); timeout_seconds: a file that
    never becomes a micrograph is quarantined after this long; order: which ready
    micrographs go first; adapt_after: adapt the model to the session after its first N
    micrographs (0: off), in adapt_steps optimiser steps; stop_file: a file of this name in
    watch_dir or the output folder stops the daemon."""

    watch_dir: PathSetting | None = None
    include: Globs = ("*.mrc", "*.tif", "*.tiff")
    exclude: Globs = ()
    recursive: bool = True
    polling: bool | None = None
    settle_seconds: PositiveFloat = 2.0
    rescan_interval: PositiveFloat = 30.0
    timeout_seconds: PositiveFloat = 600.0
    max_attempts: int = Field(3, ge=1)
    order: Literal["oldest", "newest", "alternate"] = "oldest"
    adapt_after: int = Field(0, ge=0)
    adapt_steps: int = Field(300, ge=1)
    stop_file: str = "STOP"

    @model_validator(mode="after")
    def _adaptation(self) -> WatchTable:
        if self.adapt_after == 1:
            raise ValueError("adapt_after must be 0 (off) or at least 2 micrographs, got 1")
        return self


class DenoiseTable(Table):
    """`[denoise]`: the model and how it runs. bin / pixel_size: the working pixel size (a
    factor, or Å; default: the model's); input_pixel_size: Å, for inputs without one;
    batch_size: tiles per network call (default: 1 on a CPU, 8 on a GPU); tile, overlap:
    working pixels; precision: the network's dtype (auto: bfloat16 where the device has it
    natively, else float32); compile: torch.compile (unset: when this machine can and it
    pays); guard: the do-no-harm guard; flatten_background: subtract the background's
    low-pass of this σ in Å."""

    model: PathSetting | None = None
    device: str = "auto"
    input_pixel_size: PositiveFloat | None = None
    bin: float | None = Field(None, ge=1)
    pixel_size: PositiveFloat | None = None
    batch_size: int | None = Field(None, ge=1)
    max_micrographs_per_batch: int = Field(4, ge=1)
    tile: int = Field(DEFAULT_MAX_TILE, ge=16)
    overlap: int = Field(32, ge=0)
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    compile: bool | None = None
    guard: bool = True
    flatten_background: PositiveFloat | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DenoiseTable:
        self.settings()  # raises ValueError for bin with pixel_size, overlap ≥ tile …
        return self

    def settings(self, batch_size: int | None = None) -> DenoiseSettings:
        """The denoising settings (`batch_size`: the one to use when none is set)."""
        return DenoiseSettings(
            bin_factor=self.bin,
            target_pixel_size=self.pixel_size,
            tile=self.tile,
            overlap=self.overlap,
            batch_size=self.batch_size or batch_size,
            dtype=PRECISIONS[self.precision],
            guard=self.guard,
            background_scale=self.flatten_background,
        )


class OutputsTable(Table):
    """`[outputs]`: where and what to write. out_dir: outputs (default WATCH_DIR/
    streamdenoise); state_dir: journal, status.json and lock (default out_dir; a local
    disk); voltage_kv, cs_mm (spherical aberration), amplitude_contrast: the micrographs STAR's
    optics table, unless optics_from names an upstream micrographs STAR to copy it from;
    relion_project: STAR paths are written relative to it (default: absolute);
    picks_frame: candidate coordinates in the input's pixels, the denoised's, or both;
    mirror: `denoise` writes the layout of `watch` and `batch` (folders below the inputs'
    common folder, sidecars, picks, thumbnails, OME-Zarr, STAR lists) instead of
    OUT/<stem><suffix>.mrc alone (`watch` and `batch` always do)."""

    out_dir: PathSetting | None = None
    state_dir: PathSetting | None = None
    suffix: str = ""
    float16: bool = False
    zarr: bool = True
    thumbnails: bool = True
    picks_frame: Literal["input", "denoised", "both"] = "input"
    mirror: bool = False
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    optics_from: PathSetting | None = None
    relion_project: PathSetting | None = None

    @model_validator(mode="after")
    def _optics(self) -> OutputsTable:
        self.optics()  # raises ValueError for impossible optics
        return self

    def optics(self) -> OpticsSettings:
        """The optics table's settings and the RELION project directory."""
        return OpticsSettings(
            self.voltage_kv,
            self.cs_mm,
            self.amplitude_contrast,
            self.optics_from,
            self.relion_project,
        )


class ReadinessTable(Table):
    """`[readiness]`: picking statistics. statistics: compute them and write candidate
    coordinates; particle_diameter: Å (default: from `reference`, else `watch` estimates
    it from the first micrographs, 150 until then); reference: a density map (.mrc/.map)
    or atomic model (.pdb/.cif) of the particle whose diameter the statistics use;
    thresholds: the verdict's limits (`[readiness.thresholds]`, keys of
    `ReadinessThresholds`)."""

    statistics: bool = True
    particle_diameter: PositiveFloat | None = None
    reference: PathSetting | None = None
    thresholds: Annotated[dict[str, float], AfterValidator(_thresholds)] = {}

    def known_diameter(self) -> tuple[float, str] | None:
        """The particle diameter in Å known before any micrograph, and where it comes from:
        `particle_diameter` ("given"), else the reference's (`Scatterers.diameter`,
        "reference NAME"); None when neither is set."""
        if self.particle_diameter is not None:
            return self.particle_diameter, "given"
        if self.reference is not None:
            from streamdenoise.physics.density import load_reference

            return load_reference(self.reference).diameter, f"reference {self.reference.name}"
        return None

    def diameter(self) -> tuple[float, str] | None:
        """The particle diameter in Å the statistics start with and its source
        (`known_diameter`, else `DEFAULT_DIAMETER`); None: no statistics."""
        if not self.statistics:
            return None
        return self.known_diameter() or (DEFAULT_DIAMETER, f"default ({DEFAULT_DIAMETER:g} Å)")


class DisplayTable(Table):
    """`[display]`: headless: log lines instead of the live dashboard (unset: headless
    without a terminal); status_interval: seconds between headless summary lines."""

    headless: bool | None = None
    status_interval: PositiveFloat = 10.0


class Settings(Table):
    """Every setting of `watch` (and the tables `batch` and `denoise` share with it)."""

    version: Literal[1] = VERSION
    watch: WatchTable = WatchTable()
    denoise: DenoiseTable = DenoiseTable()
    outputs: OutputsTable = OutputsTable()
    readiness: ReadinessTable = ReadinessTable()
    display: DisplayTable = DisplayTable()

    @property
    def output_dir(self) -> Path:
        """The output directory; default WATCH_DIR_streamdenoise beside the watched one, not
        inside it, where other watchers of the session (and its transfer to storage) would
        take the denoised MRCs for micrographs."""
        if self.outputs.out_dir is not None:
            return self.outputs.out_dir
        if self.watch.watch_dir is None:
            raise SettingsError("no output directory: give --out or out_dir in [outputs]")
        watched = self.watch.watch_dir.absolute()
        return watched.with_name(f"{watched.name}_streamdenoise")

    def output_options(self, model_label: str) -> OutputOptions:
        """What to write besides the denoised MRCs (`model_label` names the model)."""
        diameter = self.readiness.diameter()
        return OutputOptions(
            float16=self.outputs.float16,
            zarr=self.outputs.zarr,
            thumbnails=self.outputs.thumbnails,
            model_label=model_label,
            diameter_angstrom=None if diameter is None else diameter[0],
            diameter_source="default" if diameter is None else diameter[1],
            thresholds=ReadinessThresholds.from_dict(self.readiness.thresholds),
            picks_frame=self.outputs.picks_frame,
            reference=self.readiness.reference,
        )

    def check_places(self) -> None:
        """Before any work: read an `optics_from` STAR, create the output and state
        folders and check they are writable; ValueError (or FileProblem) naming the
        problem."""
        from streamdenoise.io.relion import read_upstream
        from streamdenoise.io.writable import writable_folder

        if self.outputs.optics_from is not None:
            read_upstream(self.outputs.optics_from)
        writable_folder(self.output_dir, "--out")
        if self.outputs.state_dir is not None:
            writable_folder(self.outputs.state_dir, "--state-dir")

    @property
    def watch_dir(self) -> Path:
        """The watched directory; SettingsError if neither a flag nor the file gave one."""
        if self.watch.watch_dir is None:
            raise SettingsError("no directory to watch: give DIR or watch_dir in [watch]")
        return self.watch.watch_dir


TABLES: dict[str, type[Table]] = {
    name: info.annotation
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, Table)
}
TABLE_OF = {key: table for table, model in TABLES.items() for key in model.model_fields}
"""The table of each setting; every key is in one table only (flags map by name)."""
OUTPUT_KEYS = ("zarr", "picks_frame", "voltage_kv", "cs_mm", "amplitude_contrast")
OUTPUT_KEYS += ("optics_from", "relion_project", "particle_diameter", "reference", "statistics")
"""Settings (with a flag) of the outputs besides the denoised MRCs: of `batch`, `watch`
and `denoise --mirror` (the flat `denoise` writes the MRCs alone)."""
RENAMED: dict[str, str | None] = {
    "background_scale": "flatten_background",
    "spherical_aberration_mm": "cs_mm",
    "mode": None,  # "live" was the only mode left
}
"""Keys of the flat settings (before version 1) that version 1 renamed (None: dropped)."""


def load_settings(path: Path | None, overrides: dict[str, Any]) -> Settings:
    """Settings from a TOML file (optional) with `overrides` on top: {setting: value}, by
    key name (the flags; None: not given). Every problem is one SettingsError (FileProblem
    for the file) naming the key, its table, the expected type and the value given."""
    data = {} if path is None else read_settings_file(path)
    flags = {key for key, value in overrides.items() if value is not None}
    for key in flags:
        data.setdefault(TABLE_OF[key], {})[key] = overrides[key]
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        messages = [_message(problem, flags) for problem in error.errors()]
        if path is not None:
            raise FileProblem(path, "; ".join(messages)) from None
        raise SettingsError("; ".join(messages)) from None


def read_settings_file(path: Path) -> dict[str, Any]:
    """The tables of a TOML settings file; FileProblem if it cannot be read, has no
    `version = 1`, or is in the flat format of before version 1 (saying how to convert)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise FileProblem(path, f"cannot read the configuration: {error}") from error
    flat = [key for key in data if key in TABLE_OF or key in RENAMED]
    if flat:
        moves = ", ".join(_move(key) for key in flat)
        raise FileProblem(
            path,
            f"settings in the flat format of before version {VERSION}: add version = "
            f"{VERSION} at the top and move each key into its table: {moves} "
            "(see systemd/example.toml)",
        )
    if "version" not in data:
        raise FileProblem(path, f"no version key: add version = {VERSION} at the top")
    return data


def _move(key: str) -> str:
    """Where the key `key` of a flat settings file goes in version 1."""
    new = RENAMED.get(key, key)
    if new is None:
        return f"delete {key}"
    return f"{key} → [{TABLE_OF[new]}]" + ("" if new == key else f" as {new}")


def _message(problem: Any, flags: set[str]) -> str:
    """One pydantic error as "key = value: what was expected" (the key as its flag,
    --like-this, where one of the `flags` gave it)."""
    loc = problem["loc"]
    key = ".".join(str(part) for part in loc if not isinstance(part, int))
    if len(loc) > 1 and loc[1] in flags:
        key = "--" + str(loc[1]).replace("_", "-")
    key += "".join(f"[{part}]" for part in loc if isinstance(part, int))
    if problem["type"] == "extra_forbidden":
        table = TABLES.get(str(loc[0])) if len(loc) > 1 else Settings
        known = ", ".join(table.model_fields) if table else ""
        return f"unknown key {key} (known here: {known})"
    if problem["type"] == "missing":
        return f"{key} is missing"
    given = f"{key} = {problem['input']!r}"
    if problem["type"].endswith("_type") or problem["type"] == "literal_error":
        return f"{given}: expected {_describe(_annotation_at(loc))}"
    if problem["type"] == "value_error":  # a check across keys (or of a whole table)
        return f"{key}: {problem['msg'].removeprefix('Value error, ')}"
    return f"{given}: {problem['msg'].replace('Input should', 'should')}"


def _annotation_at(loc: tuple[Any, ...]) -> Any:
    """The type annotation at the location `loc` of a `Settings` error."""
    hint: Any = Settings
    for part in loc:
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            hint = hint.model_fields[part].annotation if part in hint.model_fields else Any
            continue
        args = [a for a in typing.get_args(bare_type(hint)) if a is not Ellipsis]
        hint = args[-1] if args else Any  # the item of an array, the value of a table
    return hint


def bare_type(hint: Any) -> Any:
    """`hint` without Annotated metadata and without None among its options."""
    if typing.get_origin(hint) is Annotated:
        return bare_type(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return bare_type(options[0]) if len(options) == 1 else hint
    return hint


def _describe(hint: Any) -> str:
    """A TOML user's name of the type `hint` ("an array of strings", "true or false" …)."""
    hint = bare_type(hint)
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    if origin in (tuple, list):
        return f"an array of {_describe(typing.get_args(hint)[0]).removeprefix('a ')}s"
    if origin is dict:
        return f"a table of {_describe(typing.get_args(hint)[1]).removeprefix('a ')}s"
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return "a table"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, "a path (a string)" if hint is Path else str(hint))
