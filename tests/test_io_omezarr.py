"""OME-Zarr 0.5 groups: data, multiscale metadata in ångström, atomic replacement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.image import Image

from streamdenoise.io import omezarr
from streamdenoise.io.omezarr import downsample_2x, write_image_group, write_series


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
    # Level l averages 2^l × 2^l blocks: its first pixel's centre is (2^l − 1)/2 pixels in.
    shifts = [d["coordinateTransformations"][1:] for d in multiscale["datasets"]]
    assert shifts == [[], [{"type": "translation", "translation": [2.0, 2.0]}],
                      [{"type": "translation", "translation": [6.0, 6.0]}]]  # fmt: skip
    assert group["1"][0, 0] == pytest.approx(image[:2, :2].mean())
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


def test_store_opens_at_the_root_and_validates_as_ome_ngff_05(tmp_path: Path) -> None:
    root = tmp_path / "denoised.zarr"
    image = np.random.default_rng(1).random((200, 160)).astype(np.float32)
    for name in ("grid1__mic_0001", "grid1__mic_0002"):
        write_image_group(root, name, image, 1.5, levels=2, chunk=64)
    write_series(root, ["grid1__mic_0001", "grid1__mic_0002"])
    store = zarr.open_group(root, mode="r")
    assert BioFormats2Raw.from_zarr(store).attributes.ome.bioformats2raw_layout == 3
    series = store["OME"].attrs["ome"]
    assert series["version"] == "0.5"
    for name in series["series"]:  # how a reader finds the images from the root
        model = Image.from_zarr(store[name])
        datasets = model.attributes.ome.multiscales[0].datasets
        assert [d.path for d in datasets] == ["0", "1"]
        assert datasets[1].coordinateTransformations[1].translation == [0.75, 0.75]


def test_a_crash_mid_write_leaves_no_member_in_the_store(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "s.zarr"
    write_image_group(root, "m", np.zeros((64, 64), np.float32), 1.0)

    def crash(source: Path, target: Path) -> None:
        raise KeyboardInterrupt  # as if killed between writing and renaming into place

    monkeypatch.setattr(omezarr, "_replace_directory", crash)
    monkeypatch.setattr(omezarr.shutil, "rmtree", lambda *args, **kwargs: None)  # no cleanup
    with pytest.raises(KeyboardInterrupt):
        write_image_group(root, "n", np.zeros((64, 64), np.float32), 1.0)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".s.zarr.n.")  # beside the store
    assert [name for name, _ in zarr.open_group(root, mode="r").members()] == ["m"]
