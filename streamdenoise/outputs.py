"""Where outputs go, and writing them (all atomically).

OUT/denoised/<path relative to the watched dir, stem + suffix>.mrc   denoised micrograph
OUT/denoised/<...>.json                                               statistics sidecar
OUT/thumbnails/<...>.png                                              raw | denoised preview
OUT/picks/<...>.star, .box                                            candidate particles,
                                                                      input micrograph's px
OUT/picks_denoised/<...>.star, .box                                   the same in the
                                                                      denoised micrograph's px
OUT/denoised.zarr/<relative path joined by "__">/                     OME-Zarr 0.5 image
OUT/micrographs_denoised.star                                         RELION micrographs list
OUT/coordinates.star, OUT/coordinates_denoised.star                   RELION 4/5 coordinate
                                                                      lists (--coord_list)
STATE/status.json, STATE/journal.sqlite, STATE/.lock                  daemon state (STATE
                                                                      defaults to OUT)

`streamdenoise denoise` writes this layout with `--mirror` (paths relative to the inputs'
common folder), else its flat form (`folders=False`): only OUT/<stem + suffix>.mrc.

The journal records each micrograph's outputs relative to OUT, so a moved output folder
keeps its record.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamdenoise.engine.profiling import stage
from streamdenoise.io import atomic_write_bytes, atomic_write_text, write_mrc_atomic
from streamdenoise.io.jsontext import json_text
from streamdenoise.io.omezarr import write_image_group, write_series
from streamdenoise.io.png import side_by_side
from streamdenoise.io.relion import (
    MicrographRow,
    OpticsSettings,
    write_coordinate_list,
    write_micrographs_star,
)
from streamdenoise.lock import LOCK_NAME
from streamdenoise.physics.binning import bin_image

if TYPE_CHECKING:
    from streamdenoise.watch.journal import JournalEntry

THUMBNAIL_SIZE = 512
PICK_FOLDERS = {"input": "picks", "denoised": "picks_denoised"}
"""Frame of candidate coordinates → their folder: "input", pixels of the input micrograph
(what a user extracts from); "denoised", pixels of the denoised (binned) micrograph."""
PICK_FRAMES = (*PICK_FOLDERS, "both")
COORDINATE_LISTS = {"input": "coordinates.star", "denoised": "coordinates_denoised.star"}
TEMPORARY = re.compile(r"^\..+\.(?:[0-9a-f]{12}\.tmp|[0-9a-f]{32}\.(?:tmp|old))$")
"""Names of the hidden temporaries of `atomic_output` (`.<name>.<12 hex>.tmp`) and of the
OME-Zarr writer (`.<store>.<group>.<32 hex>.tmp` or `.old`)."""


def pick_frames(choice: str) -> tuple[str, ...]:
    """The frames a `picks_frame` setting ("input", "denoised" or "both") writes."""
    if choice not in PICK_FRAMES:
        raise ValueError(f"picks frame must be one of {PICK_FRAMES}, got {choice!r}")
    return tuple(PICK_FOLDERS) if choice == "both" else (choice,)


@dataclass(frozen=True)
class OutputLayout:
    """Output paths for the micrographs of one watched directory (`folders` False: every
    output directly in OUT, named after the input's stem)."""

    watch_dir: Path
    out_dir: Path
    suffix: str = ""
    state_dir: Path | None = None
    folders: bool = True

    def relative(self, source: Path) -> Path:
        """`source` relative to the watched directory (its name if it lies elsewhere)."""
        try:
            return source.resolve().relative_to(self.watch_dir.resolve())
        except ValueError:
            return Path(source.name)

    def _beside(self, folder: str, source: Path, extension: str) -> Path:
        if not self.folders:
            return self.out_dir / f"{source.stem}{self.suffix}{extension}"
        relative = self.relative(source)
        return self.out_dir / folder / relative.with_name(relative.stem + self.suffix + extension)

    def denoised_mrc(self, source: Path) -> Path:
        return self._beside("denoised", source, ".mrc")

    def sidecar(self, source: Path) -> Path:
        return self._beside("denoised", source, ".json")

    def thumbnail(self, source: Path) -> Path:
        return self._beside("thumbnails", source, ".png")

    def picks(self, source: Path, extension: str, frame: str = "input") -> Path:
        """Candidate coordinates in `frame` (a key of PICK_FOLDERS):
        OUT/picks/<relative path>.star or .box, or OUT/picks_denoised/<...>."""
        return self._beside(PICK_FOLDERS[frame], source, extension)

    def coordinate_list(self, frame: str) -> Path:
        """RELION 4/5 coordinate list of the picks in `frame`."""
        return self.out_dir / COORDINATE_LISTS[frame]

    def record(self, path: Path) -> str:
        """How the journal records an output: relative to OUT (absolute if outside)."""
        try:
            return path.relative_to(self.out_dir).as_posix()
        except ValueError:
            return str(path)

    def resolve(self, recorded: str) -> Path:
        """The path of an output the journal recorded (relative to OUT, or absolute as
        older journals have them)."""
        return self.out_dir / recorded

    def zarr_group(self, source: Path) -> str:
        return "__".join(self.relative(source).with_suffix("").parts)

    @property
    def zarr_root(self) -> Path:
        return self.out_dir / "denoised.zarr"

    @property
    def star(self) -> Path:
        return self.out_dir / "micrographs_denoised.star"

    @property
    def state(self) -> Path:
        """Directory of the journal, status.json and the lock (default: the outputs')."""
        return self.state_dir or self.out_dir

    @property
    def status(self) -> Path:
        return self.state / "status.json"

    @property
    def journal(self) -> Path:
        return self.state / "journal.sqlite"

    @property
    def lock(self) -> Path:
        return self.state / LOCK_NAME


def remove_temporaries(layout: OutputLayout) -> int:
    """Remove the temporaries a killed writer left in OUT and STATE (call holding the
    lock, before writing); returns how many."""
    tops = {layout.out_dir, layout.state, layout.zarr_root / "OME"}
    below = [
        layout.out_dir / folder for folder in ("denoised", "thumbnails", *PICK_FOLDERS.values())
    ]
    found = [path for folder in tops if folder.is_dir() for path in folder.glob(".*")]
    found += [path for folder in below if folder.is_dir() for path in folder.rglob(".*")]
    removed = 0
    for path in found:
        if not TEMPORARY.match(path.name):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def thumbnail(raw: np.ndarray, denoised: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes:
    """PNG of raw (left) beside denoised (right), each Fourier-binned to ≤ `size` px wide."""
    factor = max(1.0, max(raw.shape) / size)
    panels = [
        bin_image(image, 1.0, factor)[0] if factor > 1 else image for image in (raw, denoised)
    ]
    return side_by_side(panels)


def provenance_labels(record: dict) -> list[str]:
    """MRC header labels saying what made a denoised micrograph, from its sidecar record
    (version, model, noise level, the guard's verdict)."""
    labels = [f"streamdenoise {record.get('streamdenoise', '?')}: denoised"]
    labels.append(f"model {record.get('model', '?')}")
    if record.get("noise_sigma") is not None:
        labels.append(f"noise sigma {float(record['noise_sigma']):.4f} (normalised)")
    guard = record.get("guard")
    if guard:
        labels.append(guard["summary"])
    return labels


def write_micrograph_outputs(
    layout: OutputLayout,
    source: Path,
    raw_binned: np.ndarray,
    denoised: np.ndarray,
    pixel_size: float,
    statistics: dict,
    *,
    float16: bool = False,
    zarr: bool = True,
    thumbnails: bool = True,
    sidecar: bool = True,
) -> dict[str, str]:
    """Write every output of one micrograph; returns {kind: path relative to OUT} for the
    journal."""
    outputs: dict[str, Path] = {}
    mrc = layout.denoised_mrc(source)
    with stage("write MRC"):
        write_mrc_atomic(
            mrc,
            denoised,
            pixel_size,
            dtype=np.float16 if float16 else np.float32,
            labels=provenance_labels(statistics),
        )
    outputs["mrc"] = mrc
    if zarr:
        with stage("write OME-Zarr"):
            outputs["zarr"] = write_image_group(
                layout.zarr_root,
                layout.zarr_group(source),
                denoised,
                pixel_size,
                attributes={"source": str(source)},
            )
    if thumbnails:
        png = layout.thumbnail(source)
        with stage("write thumbnail"):
            atomic_write_bytes(png, thumbnail(raw_binned, denoised))
        outputs["thumbnail"] = png
    if sidecar:
        path = layout.sidecar(source)
        record = {"source": str(source), "pixel_size_angstrom": pixel_size, **statistics}
        with stage("write sidecar"):
            atomic_write_text(path, json_text(record))
        outputs["sidecar"] = path
    return {kind: layout.record(path) for kind, path in outputs.items()}


@dataclass(frozen=True)
class DoneMicrograph:
    """A done micrograph as the session's lists need it: input (absolute), denoised MRC,
    working pixel size (Å/px), coordinate STAR file per frame, OME-Zarr image name (None:
    not written)."""

    source: Path
    mrc: Path
    pixel_size: float
    picks: dict[str, Path]
    zarr: str | None

    @classmethod
    def from_journal(
        cls, layout: OutputLayout, source: Path, outputs: dict[str, str]
    ) -> DoneMicrograph | None:
        """From a journal row's input and outputs (the pixel size from its sidecar); None
        when the outputs are missing."""
        try:
            sidecar = json.loads(layout.resolve(outputs["sidecar"]).read_text())
            pixel_size = float(sidecar["pixel_size_angstrom"])
            mrc = layout.resolve(outputs["mrc"])
        except (OSError, KeyError, ValueError, TypeError):
            return None
        picks = {
            frame: layout.resolve(outputs[f"{folder}_star"])
            for frame, folder in PICK_FOLDERS.items()
            if f"{folder}_star" in outputs
        }
        zarr = layout.resolve(outputs["zarr"]).name if "zarr" in outputs else None
        return cls(Path(os.path.abspath(source)), mrc, pixel_size, picks, zarr)


def write_session_lists(
    layout: OutputLayout, done: Sequence[DoneMicrograph], optics: OpticsSettings
) -> None:
    """Rewrite (atomically) what lists the session's micrographs: the RELION micrographs
    STAR, a coordinate list per frame of picks, the OME-Zarr store's series."""
    if not done:
        return
    with stage("write micrographs STAR"):
        rows = [MicrographRow(d.mrc, d.pixel_size, d.source) for d in done]
        write_micrographs_star(layout.star, rows, optics)
        for frame in PICK_FOLDERS:
            named = [(d.source if frame == "input" else d.mrc, d) for d in done]
            pairs = [(name, d.picks[frame]) for name, d in named if frame in d.picks]
            if pairs:
                write_coordinate_list(layout.coordinate_list(frame), pairs, optics.project)
    images = [d.zarr for d in done if d.zarr is not None]
    if images:
        write_series(layout.zarr_root, images)


class SessionLists:
    """The session's done micrographs (from the journal, then as they finish) and the lists
    written from them (`write_session_lists`)."""

    def __init__(self, layout: OutputLayout, optics: OpticsSettings) -> None:
        self.layout = layout
        self.optics = optics
        self._done: dict[Path, DoneMicrograph] = {}  # input → what the lists need

    def __len__(self) -> int:
        """Done micrographs whose outputs were found."""
        return len(self._done)

    def add(self, source: Path, outputs: dict[str, str]) -> None:
        """A done micrograph: input and its recorded outputs (skipped when they are gone)."""
        done = DoneMicrograph.from_journal(self.layout, source, outputs)
        if done is not None:
            self._done[done.source] = done

    def add_entries(self, entries: Iterable[JournalEntry]) -> None:
        """The done micrographs of a journal (`Journal.done_entries()`)."""
        for entry in entries:
            self.add(entry.path, entry.outputs or {})

    def write(self) -> None:
        """Rewrite the lists (nothing while no micrograph is done)."""
        write_session_lists(self.layout, list(self._done.values()), self.optics)


def common_folder(paths: Sequence[Path]) -> Path:
    """The deepest folder holding every path of `paths` (files, or folders themselves),
    absolute: what `batch` and `denoise --mirror` mirror below OUT."""
    folders = [os.path.abspath(p if Path(p).is_dir() else Path(p).parent) for p in paths]
    return Path(os.path.commonpath(folders))


def check_targets(files: Sequence[Path], layout: OutputLayout) -> None:
    """Raise ValueError, naming the files, before any work when a denoised MRC of the run
    would overwrite an input or another denoised MRC of the run."""
    inputs = {os.path.realpath(path): path for path in files}
    claimed: dict[str, Path] = {}
    for path in files:
        target = layout.denoised_mrc(path)
        key = os.path.realpath(target)
        if key in inputs:
            raise ValueError(
                f"{target} would overwrite the input {inputs[key]}; choose another --out "
                "or a --suffix"
            )
        if key in claimed:
            raise ValueError(
                f"{claimed[key]} and {path} would both be written to {target}; add --mirror "
                "to keep their folders below OUT, or denoise them into different --out folders"
            )
        claimed[key] = path


def journal_in(state: Path) -> Path:
    """The journal of the state folder `state`; ValueError if there is none."""
    path = state / "journal.sqlite"
    if not path.is_file():
        raise ValueError(f"{path}: no journal here (give the daemon's OUT or --state-dir)")
    return path
