"""OME-Zarr 0.5 (Zarr v3) output: one multiscale image group per micrograph in a store.

Layout: STORE.zarr/zarr.json (the root group) and STORE.zarr/<name>/ for each micrograph,
with arrays "0", "1", ... (each level binned 2× by averaging) and the OME "multiscales"
metadata with axes (y, x) in ångström. A group is written under a hidden temporary name
beside its final place and renamed into place, so a reader never sees half a group; one
micrograph's group is only ever written by one task.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import zarr

OME_VERSION = "0.5"


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
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [pixel_size * 2**level] * 2}
                        ],
                    }
                    for level in range(level_count)
                ],
            }
        ],
    }


def ensure_store(root: Path) -> None:
    """Create the store's root group (zarr.json) if it does not exist yet."""
    if (root / "zarr.json").is_file():
        return
    root.mkdir(parents=True, exist_ok=True)
    temporary = root.parent / f".{root.name}.{uuid.uuid4().hex}.tmp"
    zarr.open_group(temporary, mode="w", zarr_format=3)
    os.replace(temporary / "zarr.json", root / "zarr.json")
    shutil.rmtree(temporary, ignore_errors=True)


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
    temporary = root / f".{name}.{uuid.uuid4().hex}.tmp"
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
        aside = target.parent / f".{target.name}.{uuid.uuid4().hex}.old"
        os.replace(target, aside)
        os.replace(source, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(source, target)
