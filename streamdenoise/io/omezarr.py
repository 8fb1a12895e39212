"""OME-Zarr 0.5 (Zarr v3) output: one multiscale image group per micrograph in a store.

Layout (OME-NGFF 0.5's "bioformats2raw.layout", the one way 0.5 lists several images in a
store): STORE.zarr/zarr.json, the root group, says `bioformats2raw.layout: 3`;
STORE.zarr/OME/zarr.json lists the images' paths in `series`; STORE.zarr/<name>/ is one
micrograph, with arrays "0", "1", ... (each level binned 2× by averaging, its
coordinateTransformations a scale and the half-pixel translation of that averaging) and the
OME "multiscales" metadata with axes (y, x) in ångström.

An image group is written under a hidden temporary name beside the store (not inside it,
so a crash leaves no member behind) and renamed into place, so a reader never sees half a
group; one micrograph's group is only ever written by one task. The series list is written
by the session's one journal writer, from the micrographs the journal says are done.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr

from streamdenoise.io.atomic import atomic_write_text

OME_VERSION = "0.5"
ROOT_ATTRIBUTES = {"ome": {"version": OME_VERSION, "bioformats2raw.layout": 3}}


def downsample_2x(image: np.ndarray) -> np.ndarray:
    """Average 2×2 blocks of (H, W) → (H//2, W//2) float32 (odd edges dropped)."""
    h, w = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    blocks = image[:h, :w].reshape(h // 2, 2, w // 2, 2).astype(np.float32)
    return blocks.mean(axis=(1, 3))


def pyramid(image: np.ndarray, levels: int, min_size: int = 64) -> list[np.ndarray]:
    """Full resolution then 2× binned copies, at most `levels`, none smaller than `min_size`."""
    out = [np.asarray(image, dtype=np.float32)]
    while len(out) < levels and min(out[-1].shape) // 2 >= min_size:
        out.append(downsample_2x(out[-1]))
    return out


def multiscales_metadata(name: str, pixel_size: float, level_count: int) -> dict:
    """The OME-Zarr 0.5 "ome" attribute of a 2-D image group, scales in Å."""
    return {
        "version": OME_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": [
                    {"name": "y", "type": "space", "unit": "angstrom"},
                    {"name": "x", "type": "space", "unit": "angstrom"},
                ],
                "datasets": [
                    {
                        "path": str(level),
                        "coordinateTransformations": _transforms(pixel_size, level),
                    }
                    for level in range(level_count)
                ],
            }
        ],
    }


def _transforms(pixel_size: float, level: int) -> list[dict]:
    """coordinateTransformations of pyramid `level`: its pixel size (Å) and, below level
    0, the offset of its first pixel's centre, (2**level − 1)/2 level-0 pixels (the centre
    of the 2**level × 2**level block it averages)."""
    scale = [{"type": "scale", "scale": [pixel_size * 2**level] * 2}]
    offset = pixel_size * (2**level - 1) / 2
    return scale + ([{"type": "translation", "translation": [offset] * 2}] if level else [])


def _group_json(attributes: dict) -> str:
    """zarr.json of a Zarr v3 group with `attributes`."""
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attributes})


def ensure_store(root: Path) -> None:
    """Create the store's root group with its OME attributes if it lacks them."""
    path = root / "zarr.json"
    try:
        if json.loads(path.read_text()).get("attributes") == ROOT_ATTRIBUTES:
            return
    except (OSError, ValueError):
        pass
    atomic_write_text(path, _group_json(ROOT_ATTRIBUTES))


def write_series(root: Path, names: Sequence[str]) -> None:
    """List the images `names` (paths below `root`) in STORE/OME/zarr.json, atomically."""
    ensure_store(root)
    series = {"ome": {"version": OME_VERSION, "series": list(names)}}
    atomic_write_text(root / "OME" / "zarr.json", _group_json(series))


def _temporary(root: Path, name: str, kind: str) -> Path:
    """A hidden path beside the store (same file system, never a member of it)."""
    return root.parent / f".{root.name}.{name}.{uuid.uuid4().hex}.{kind}"


def write_image_group(
    root: Path,
    name: str,
    image: np.ndarray,
    pixel_size: float,
    *,
    levels: int = 3,
    chunk: int = 512,
    attributes: dict | None = None,
) -> Path:
    """Write `image` (H, W) at `pixel_size` Å/px as the multiscale group `root/name`.

    Replaces an existing group of that name. `attributes` (JSON-able) are stored under
    "streamdenoise" in the group's attributes. Returns the group's path.
    """
    if pixel_size <= 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size}")
    ensure_store(root)
    final = root / name
    temporary = _temporary(root, name, "tmp")
    try:
        group = zarr.open_group(temporary, mode="w", zarr_format=3)
        images = pyramid(image, levels)
        for level, data in enumerate(images):
            array = group.create_array(
                str(level),
                shape=data.shape,
                chunks=(min(chunk, data.shape[0]), min(chunk, data.shape[1])),
                dtype="float32",
                dimension_names=("y", "x"),
            )
            array[:] = data
        group.attrs["ome"] = multiscales_metadata(name, pixel_size, len(images))
        if attributes:
            group.attrs["streamdenoise"] = attributes
        _replace_directory(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final


def _replace_directory(source: Path, target: Path) -> None:
    """Move directory `source` onto `target`, replacing an existing one (never half-done:
    the old one is first renamed aside, then removed)."""
    if target.exists():
        aside = _temporary(target.parent, target.name, "old")
        os.replace(target, aside)
        os.replace(source, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(source, target)
