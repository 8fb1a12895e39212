"""Model file: round trip, atomic write, and a clear ModelFileError for every bad file."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from streamdenoise.errors import ModelFileError
from streamdenoise.model.modelfile import FORMAT, VERSION, load_model, save_model
from streamdenoise.model.unet import ScoreUNet, UNetConfig

CFG = UNetConfig(base_channels=8, channel_multipliers=(1, 2), norm_groups=4, downsample="avgpool")
PROVENANCE = {"data": "sim-6msm", "steps": 40, "loss": [1.0, 0.5], "clean": True, "note": None}


def _trained_like() -> ScoreUNet:
    torch.manual_seed(0)
    model = ScoreUNet(CFG)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # includes the zero-initialised head
    return model.eval()


def _saved(tmp_path: Path) -> Path:
    return save_model(tmp_path / "m.pt", _trained_like(), pixel_size=4.0, provenance=PROVENANCE)


def test_round_trip_gives_identical_outputs_and_metadata(tmp_path: Path) -> None:
    model = _trained_like()
    path = save_model(
        tmp_path / "model.pt",
        model,
        pixel_size=3.2,
        provenance=PROVENANCE,
        extra={"features": torch.arange(4.0)},
    )
    loaded = load_model(path)
    assert loaded.path == path
    assert not loaded.model.training
    assert loaded.model.config == CFG
    assert loaded.pixel_size == 3.2
    assert loaded.provenance == PROVENANCE
    meta = loaded.metadata
    assert meta["format"] == FORMAT and meta["version"] == VERSION
    assert meta["normalization"] == {"clip": 5.0, "scale": 5.0}
    assert "state_dict" not in meta
    assert torch.equal(meta["extra"]["features"], torch.arange(4.0))
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        ref = model(x)
        out = loaded.model(x)
    assert ref.abs().max() > 0
    assert torch.equal(out, ref)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    first = path.read_bytes()
    save_model(path, ScoreUNet(CFG), pixel_size=4.0, provenance={})  # overwrite in place
    assert path.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.parametrize(
    "provenance",
    [{"s": {1, 2}}, {"t": (1, 2)}, {1: "x"}, {"x": float("nan")}, {"a": torch.ones(1)}],
)
def test_non_json_provenance_is_refused_and_nothing_written(
    tmp_path: Path, provenance: dict[Any, Any]
) -> None:
    with pytest.raises(TypeError):
        save_model(tmp_path / "m.pt", ScoreUNet(CFG), pixel_size=4.0, provenance=provenance)
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_bad_pixel_size_and_non_unet(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pixel_size"):
        save_model(tmp_path / "m.pt", ScoreUNet(CFG), pixel_size=0.0, provenance={})
    with pytest.raises(TypeError, match="ScoreUNet"):
        save_model(tmp_path / "m.pt", torch.nn.Conv2d(1, 1, 3), pixel_size=1.0, provenance={})


def _expect_error(path: Path, reason: str) -> None:
    with pytest.raises(ModelFileError, match=reason) as info:
        load_model(path)
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "absent.pt", "no such file")
    _expect_error(tmp_path, "not a regular file")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    _expect_error(path, "not a model file")
    path.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(4096))
    _expect_error(path, "corrupt or truncated")


def test_truncated_real_file(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30):
        path.write_bytes(data[:cut])
        _expect_error(path, "corrupt or truncated")
    path.write_bytes(data[:2])
    _expect_error(path, "not a model file")


def test_plain_pickle_of_something_else(tmp_path: Path) -> None:
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"format": FORMAT, "version": 1}))
    _expect_error(path, "not a model file")


def test_torch_file_holding_an_arbitrary_object_is_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "obj.pt"
    torch.save(Path("/etc/passwd"), path)  # a class outside the weights-only allow-list
    _expect_error(path, "objects other than tensors")
    torch.save([1, 2, 3], path)
    _expect_error(path, "holds a list")


def _rewritten(tmp_path: Path, change: dict[str, Any], drop: str | None = None) -> Path:
    path = _saved(tmp_path)
    data = torch.load(path, weights_only=True)
    data.update(change)
    if drop:
        del data[drop]
    torch.save(data, path)
    return path


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"format": "topaz"}, "format is 'topaz'"),
        ({"version": VERSION + 1}, "newer than this streamdenoise reads"),
        ({"version": "1"}, "invalid format version"),
        ({"normalization": {"clip": 3.0, "scale": 3.0}}, "normalization"),
        ({"pixel_size": -1.0}, "invalid pixel_size"),
        ({"unet": {"base_channels": 8, "heads": 4}}, "invalid unet configuration"),
        ({"unet": {**CFG.to_dict(), "base_channels": 16}}, "weights do not match"),
        ({"provenance": "none"}, "provenance"),
    ],
)
def test_invalid_contents(tmp_path: Path, change: dict[str, Any], reason: str) -> None:
    _expect_error(_rewritten(tmp_path, change), reason)


def test_missing_format_key_and_incomplete_weights(tmp_path: Path) -> None:
    _expect_error(_rewritten(tmp_path, {}, drop="format"), "format is None")
    path = _saved(tmp_path)
    data = torch.load(path, weights_only=True)
    del data["state_dict"]["head.weight"]
    torch.save(data, path)
    _expect_error(path, "weights do not match.*head.weight")
