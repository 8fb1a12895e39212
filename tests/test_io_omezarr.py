"""OME-Zarr 0.5 groups: data, multiscale metadata in ångström, atomic replacement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from streamdenoise.io.omezarr import downsample_2x, write_image_group


def test_group_round_trip_and_metadata(tmp_path: Path) -> None:
    image = np.random.default_rng(0).random((300, 257)).astype(np.float32)
    root = tmp_path / "session.zarr"
    write_image_group(root, "mic_0001", image, 4.0, levels=3, chunk=128, attributes={"a": 1})
    group = zarr.open_group(root / "mic_0001", mode="r")
    assert np.array_equal(group["0"][:], image)
    assert group["1"].shape == (150, 128)
    assert np.allclose(group["1"][:], downsample_2x(image))
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    multiscale = ome["multiscales"][0]
    assert [a["unit"] for a in multiscale["axes"]] == ["angstrom", "angstrom"]
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales == [[4.0, 4.0], [8.0, 8.0], [16.0, 16.0]]
    assert group.attrs["streamdenoise"] == {"a": 1}
    assert (root / "zarr.json").is_file()
    assert zarr.open_group(root, mode="r")["mic_0001"]["0"].shape == (300, 257)


def test_rewrite_replaces_and_failure_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "s.zarr"
    write_image_group(root, "m", np.zeros((64, 64), np.float32), 1.0)
    write_image_group(root, "m", np.ones((64, 64), np.float32), 1.0)
    assert zarr.open_group(root / "m", mode="r")["0"][:].min() == 1.0
    with pytest.raises(ValueError):
        write_image_group(root, "bad", np.zeros((64, 64), np.float32), 0.0)
    with pytest.raises(ValueError):
        write_image_group(root, "bad", np.zeros((64, 64, 2), np.float32), 1.0)
    assert sorted(p.name for p in root.iterdir()) == ["m", "zarr.json"]
