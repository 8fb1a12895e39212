"""Write a simulated session to disk as a microscope's motion correction would.

Layout under the output directory:
    micrographs/mic_0001.mrc        the noisy micrograph (float32, e⁻ per pixel)
    ground_truth/mic_0001_clean.mrc the noise-free expected counts
    ground_truth/mic_0001_particles.star  particle centres (_rlnCoordinateX/Y, pixels)
    ground_truth/mic_0001.json      the parameters (defocus, dose, pixel size, seed, ...)
    session.json                    the session's settings
Ground truth is written before its micrograph appears, so a watcher that sees a
micrograph can always find its truth.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from streamdenoise import __version__
from streamdenoise.io import atomic_write_text, write_mrc_atomic, write_star_atomic
from streamdenoise.io.jsontext import json_text
from streamdenoise.physics.density import Scatterers
from streamdenoise.physics.session import SessionSpec, micrograph_params
from streamdenoise.physics.simulator import simulate_micrograph

WRITE_MODES = ("direct", "chunked", "rename", "mixed")


def micrograph_name(index: int) -> str:
    """File stem of micrograph `index` (0-based): mic_0001, mic_0002, ..."""
    return f"mic_{index + 1:04d}"


def _copy_into_place(staged: Path, target: Path, mode: str, duration: float) -> None:
    """Make `staged` appear at `target` the way an acquisition program would.

    direct: one fast copy; chunked: the file grows in 8 chunks over `duration` seconds (a
    slow network write); rename: copied to a hidden temporary beside the target, renamed.
    """
    if mode == "rename":
        temporary = target.with_name(f".{target.name}.part")
        shutil.copyfile(staged, temporary)
        os.replace(temporary, target)
    elif mode == "chunked":
        data = staged.read_bytes()
        chunks = 8
        step = -(-len(data) // chunks)
        with open(target, "wb") as out:
            for start in range(0, len(data), step):
                out.write(data[start : start + step])
                out.flush()
                time.sleep(duration / chunks)
    else:
        shutil.copyfile(staged, target)
    staged.unlink()


def check_new_session(out: Path) -> None:
    """ValueError if `out` already holds a simulated session (a watched micrographs/
    folder may exist already; files of a session may not)."""
    found = [p for p in (out / "ground_truth", out / "session.json") if p.exists()]
    found += sorted((out / "micrographs").glob("mic_*.mrc"))
    if found:
        raise ValueError(
            f"{out} already holds a simulated session ({found[0].name} …); give a new folder"
        )


def write_session(
    out: Path,
    spec: SessionSpec,
    scatterers: Scatterers,
    *,
    rate: float | None = None,
    write_mode: str = "mixed",
    float16: bool = False,
    on_written: Callable[[int, Path], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Path]:
    """Simulate and write `spec.count` micrographs under `out`; returns their paths.

    rate: seconds between micrographs (None: as fast as possible, always written directly);
    write_mode: one of WRITE_MODES ("mixed" cycles direct, chunked, rename).
    """
    if write_mode not in WRITE_MODES:
        raise ValueError(f"write mode must be one of {WRITE_MODES}, got {write_mode!r}")
    micrographs, truth, staging = out / "micrographs", out / "ground_truth", out / ".staging"
    for directory in (micrographs, truth, staging):
        directory.mkdir(parents=True, exist_ok=True)
    session = {"spec": asdict(spec), "reference": scatterers.source, "rate": rate}
    atomic_write_text(out / "session.json", json_text(session))
    modes = _mode_cycle(write_mode if rate else "direct")
    start = clock()
    written: list[Path] = []
    for index in range(spec.count):
        name = micrograph_name(index)
        params = micrograph_params(spec, index)
        simulated = simulate_micrograph(scatterers, params)
        labels = [f"streamdenoise {__version__}: simulated, seed {params.seed}"]
        write_mrc_atomic(
            truth / f"{name}_clean.mrc",
            simulated.clean,
            params.pixel_size,
            labels=[*labels, "noise-free expected counts"],
        )
        write_star_atomic(
            truth / f"{name}_particles.star",
            {
                "": {
                    "_rlnCoordinateX": simulated.coordinates[:, 0].tolist(),
                    "_rlnCoordinateY": simulated.coordinates[:, 1].tolist(),
                }
            },
        )
        record = {
            "micrograph": f"micrographs/{name}.mrc",
            "params": params.to_json(),
            "particle_count": len(simulated.coordinates),
            "particle_diameter_angstrom": simulated.diameter,
            "carbon_area_fraction": float(simulated.carbon_mask.mean()),
            "reference": scatterers.source,
        }
        atomic_write_text(truth / f"{name}.json", json_text(record))
        staged = staging / f"{name}.mrc"
        dtype = np.float16 if float16 else np.float32
        write_mrc_atomic(staged, simulated.noisy, params.pixel_size, dtype=dtype, labels=labels)
        del simulated
        if rate:
            sleep(max(0.0, start + index * rate - clock()))
        target = micrographs / f"{name}.mrc"
        _copy_into_place(staged, target, next(modes), duration=min(2.0, 0.4 * (rate or 0)))
        written.append(target)
        if on_written is not None:
            on_written(index, target)
    staging.rmdir()
    return written


def _mode_cycle(write_mode: str) -> Iterator[str]:
    """Endless iterator of write modes: the one given, or direct/chunked/rename in turn."""
    cycle = ("direct", "chunked", "rename") if write_mode == "mixed" else (write_mode,)
    while True:
        yield from cycle
