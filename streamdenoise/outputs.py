"""Where outputs go, and writing them (all atomically).

OUT/denoised/<path relative to the watched dir, stem + suffix>.mrc   denoised micrograph
OUT/denoised/<...>.json                                               statistics sidecar
OUT/thumbnails/<...>.png                                              raw | denoised preview
OUT/picks/<...>.star, .box                                            candidate particles
OUT/denoised.zarr/<relative path joined by "__">/                     OME-Zarr 0.5 group
OUT/micrographs_denoised.star                                         RELION micrographs list
STATE/status.json, STATE/journal.sqlite, STATE/.lock                  daemon state (STATE
                                                                      defaults to OUT)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdenoise.engine.profiling import stage
from streamdenoise.io import atomic_write_bytes, atomic_write_text, write_mrc_atomic
from streamdenoise.io.jsontext import json_text
from streamdenoise.io.omezarr import write_image_group
from streamdenoise.io.png import side_by_side
from streamdenoise.io.star import write_star_atomic
from streamdenoise.physics.binning import bin_image

THUMBNAIL_SIZE = 512


@dataclass(frozen=True)
class OutputLayout:
    """Output paths for the micrographs of one watched directory."""

    watch_dir: Path
    out_dir: Path
    suffix: str = ""
    state_dir: Path | None = None

    def relative(self, source: Path) -> Path:
        """`source` relative to the watched directory (its name if it lies elsewhere)."""
        try:
            return source.resolve().relative_to(self.watch_dir.resolve())
        except ValueError:
            return Path(source.name)

    def _beside(self, folder: str, source: Path, extension: str) -> Path:
        relative = self.relative(source)
        return self.out_dir / folder / relative.with_name(relative.stem + self.suffix + extension)

    def denoised_mrc(self, source: Path) -> Path:
        return self._beside("denoised", source, ".mrc")

    def sidecar(self, source: Path) -> Path:
        return self._beside("denoised", source, ".json")

    def thumbnail(self, source: Path) -> Path:
        return self._beside("thumbnails", source, ".png")

    def picks(self, source: Path, extension: str) -> Path:
        """Candidate coordinates for pickers: OUT/picks/<relative path>.star or .box."""
        return self._beside("picks", source, extension)

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
        return self.state / ".lock"


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
) -> dict[str, str]:
    """Write every output of one micrograph; returns {kind: path} for the journal."""
    outputs: dict[str, str] = {}
    mrc = layout.denoised_mrc(source)
    with stage("write MRC"):
        write_mrc_atomic(
            mrc,
            denoised,
            pixel_size,
            dtype=np.float16 if float16 else np.float32,
            labels=provenance_labels(statistics),
        )
    outputs["mrc"] = str(mrc)
    if zarr:
        with stage("write OME-Zarr"):
            group = write_image_group(
                layout.zarr_root,
                layout.zarr_group(source),
                denoised,
                pixel_size,
                attributes={"source": str(source)},
            )
        outputs["zarr"] = str(group)
    if thumbnails:
        png = layout.thumbnail(source)
        with stage("write thumbnail"):
            atomic_write_bytes(png, thumbnail(raw_binned, denoised))
        outputs["thumbnail"] = str(png)
    sidecar = layout.sidecar(source)
    record = {"source": str(source), "pixel_size_angstrom": pixel_size, **statistics}
    with stage("write sidecar"):
        atomic_write_text(sidecar, json_text(record))
    outputs["sidecar"] = str(sidecar)
    return outputs


def star_row(outputs: dict[str, str]) -> tuple[str, float] | None:
    """(denoised MRC path, working pixel size Å) of a done micrograph, from its journal
    outputs and sidecar; None when they are missing."""
    try:
        sidecar = json.loads(Path(outputs["sidecar"]).read_text())
        return outputs["mrc"], float(sidecar["pixel_size_angstrom"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def write_micrographs_star(path: Path, micrographs: list[tuple[str, float]]) -> None:
    """RELION 3.1+ micrographs STAR of the denoised micrographs [(mrc path, Å/px)].

    One optics group per distinct pixel size (normally one), as RELION expects.
    """
    pixel_sizes = sorted({round(p, 6) for _, p in micrographs})
    group_of = {p: i + 1 for i, p in enumerate(pixel_sizes)}
    with stage("write micrographs STAR"):
        write_star_atomic(
            path,
            {
                "optics": {
                    "_rlnOpticsGroupName": [f"opticsGroup{i + 1}" for i in range(len(pixel_sizes))],
                    "_rlnOpticsGroup": list(range(1, len(pixel_sizes) + 1)),
                    "_rlnMicrographPixelSize": pixel_sizes,
                },
                "micrographs": {
                    "_rlnMicrographName": [name for name, _ in micrographs],
                    "_rlnOpticsGroup": [group_of[round(p, 6)] for _, p in micrographs],
                },
            },
        )
