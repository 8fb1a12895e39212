"""What RELION 3.1, 4 and 5 read from a session: the micrographs STAR (optics groups with
pixel size, voltage, Cs and amplitude contrast) and the coordinate list (micrograph →
coordinate file) that RELION 4/5 Extract takes with `--coord_list`.

The optics come from the configuration, or are copied from an upstream STAR file such as
RELION's `MotionCorr/jobNNN/corrected_micrographs.star` (each micrograph gets the optics
group its input has there, matched by file name). Paths are written relative to the RELION
project directory when one is given (RELION resolves names from the project directory),
else absolute.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streamdenoise.errors import FileProblem
from streamdenoise.io.star import read_star, write_star_atomic

REQUIRED = ("_rlnVoltage", "_rlnSphericalAberration", "_rlnAmplitudeContrast")
"""Optics labels RELION's autopick and extraction need besides the pixel size."""
PIXEL_SIZE = "_rlnMicrographPixelSize"


@dataclass(frozen=True)
class OpticsSettings:
    """Microscope settings for the optics table: voltage in kV, spherical aberration in mm,
    amplitude contrast (fraction), used unless `optics_from` (an upstream micrographs STAR)
    is given; `project`: the RELION project directory paths are written relative to."""

    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    optics_from: Path | None = None
    project: Path | None = None

    def __post_init__(self) -> None:
        if not self.voltage_kv > 0:
            raise ValueError(f"voltage must be positive (kV), got {self.voltage_kv}")
        if not self.spherical_aberration_mm >= 0:
            raise ValueError(f"Cs must be ≥ 0 mm, got {self.spherical_aberration_mm}")
        if not 0 <= self.amplitude_contrast < 1:
            raise ValueError(f"amplitude contrast must be in [0, 1), got {self.amplitude_contrast}")


@dataclass(frozen=True)
class Upstream:
    """An upstream micrographs STAR: its optics rows ({label: value text}, one per group,
    keyed by group number) and each micrograph file name's group number."""

    optics: dict[str, dict[str, str]]
    group_of_name: dict[str, str]


def read_upstream(path: Path) -> Upstream:
    """Optics groups and micrograph groups of a RELION 3.1+ micrographs STAR file (read
    again only when its size or modification time changed).

    Raises FileProblem naming the file when it cannot be read, has no optics table or
    lacks a label RELION needs (voltage, Cs, amplitude contrast).
    """
    try:
        stat = Path(path).stat()
    except OSError:
        return _read_upstream(Path(path), 0, -1)  # read_star names the problem
    return _read_upstream(Path(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _read_upstream(path: Path, mtime_ns: int, size: int) -> Upstream:
    """`read_upstream` of one version (`mtime_ns`, `size`) of the file."""
    blocks = read_star(path)
    optics = blocks.get("optics")
    if not optics or "_rlnOpticsGroup" not in optics:
        raise FileProblem(path, "no data_optics table with _rlnOpticsGroup (RELION 3.1+ format)")
    missing = [label for label in REQUIRED if label not in optics]
    if missing:
        raise FileProblem(path, f"the optics table lacks {', '.join(missing)}")
    rows = {
        group: {label: values[index] for label, values in optics.items()}
        for index, group in enumerate(optics["_rlnOpticsGroup"])
    }
    micrographs = blocks.get("micrographs", {})
    names = micrographs.get("_rlnMicrographName", [])
    groups = micrographs.get("_rlnOpticsGroup", [])
    return Upstream(rows, {Path(n).name: g for n, g in zip(names, groups, strict=False)})


def relion_path(path: str | Path, project: Path | None) -> str:
    """`path` as RELION should read it: relative to `project` if given, else absolute."""
    absolute = os.path.abspath(path)
    return os.path.relpath(absolute, os.path.abspath(project)) if project else absolute


@dataclass(frozen=True)
class MicrographRow:
    """One denoised micrograph for the STAR file: its MRC, working pixel size (Å/px) and
    the input micrograph it came from (which names its upstream optics group)."""

    mrc: Path
    pixel_size: float
    source: Path


def micrographs_blocks(
    rows: Sequence[MicrographRow], settings: OpticsSettings
) -> dict[str, dict[str, list]]:
    """The optics and micrographs blocks of the micrographs STAR for `rows`.

    One optics group per distinct (upstream group, pixel size), numbered from 1 in order
    of appearance; its row is the upstream one (or the configured settings) with
    `_rlnMicrographPixelSize` set to the denoised micrographs' pixel size.
    """
    upstream = read_upstream(settings.optics_from) if settings.optics_from else None
    fallback = min(upstream.optics, key=int) if upstream else "1"
    keys = []
    for row in rows:
        group = upstream.group_of_name.get(row.source.name, fallback) if upstream else "1"
        keys.append((group, round(row.pixel_size, 6)))
    number = {key: index + 1 for index, key in enumerate(dict.fromkeys(keys))}
    optics: dict[str, list] = {}
    for (group, pixel_size), index in number.items():
        base = upstream.optics.get(group, upstream.optics[fallback]) if upstream else {}
        values: dict[str, object] = {
            "_rlnOpticsGroupName": f"opticsGroup{index}",
            **base,
            "_rlnOpticsGroup": index,
            PIXEL_SIZE: pixel_size,
        }
        if not upstream:
            values["_rlnVoltage"] = settings.voltage_kv
            values["_rlnSphericalAberration"] = settings.spherical_aberration_mm
            values["_rlnAmplitudeContrast"] = settings.amplitude_contrast
        for label, value in values.items():
            optics.setdefault(label, []).append(value)
    return {
        "optics": optics,
        "micrographs": {
            "_rlnMicrographName": [relion_path(row.mrc, settings.project) for row in rows],
            "_rlnOpticsGroup": [number[key] for key in keys],
        },
    }


def write_micrographs_star(
    path: Path, rows: Sequence[MicrographRow], settings: OpticsSettings
) -> None:
    """Write the micrographs STAR of `rows` atomically (see `micrographs_blocks`)."""
    write_star_atomic(path, micrographs_blocks(rows, settings))


def write_coordinate_list(
    path: Path, pairs: Sequence[tuple[Path, Path]], project: Path | None
) -> None:
    """Write a RELION 4/5 coordinate list (Extract's `--coord_list`, as AutoPick's
    `autopick.star`): block `coordinate_files` of (micrograph, its coordinate STAR file)."""
    write_star_atomic(
        path,
        {
            "coordinate_files": {
                "_rlnMicrographName": [relion_path(m, project) for m, _ in pairs],
                "_rlnMicrographCoordinates": [relion_path(c, project) for _, c in pairs],
            }
        },
    )
