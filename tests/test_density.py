"""Reference densities: atomic models, maps, 3-D potentials and resampling."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from streamdenoise.errors import ReferenceMapError
from streamdenoise.physics.density import (
    NET_POTENTIAL_PER_ATOM,
    atom_kernel,
    load_reference,
    potential_volume,
    resample_volume,
)


@pytest.fixture(scope="module")
def builtin():
    return load_reference()


def test_builtin_reference_is_cftr_sized(builtin) -> None:
    assert 9000 < len(builtin.weights) < 10000
    assert 100 < builtin.diameter < 160  # Å
    assert np.allclose(builtin.positions.mean(axis=0), 0, atol=1e-6)
    assert set(builtin.group_names) >= {"C", "N", "O", "S"}


def test_atom_in_ice_has_about_a_third_of_its_vacuum_contrast() -> None:
    zero = np.zeros(1)
    vacuum = atom_kernel("C", in_ice=False)(zero)[0]
    in_ice = atom_kernel("C")(zero)[0]
    assert vacuum == pytest.approx(47.878 * 2.5088, rel=1e-3)  # V·Å³
    assert 0.2 < in_ice / vacuum < 0.5
    high = np.array([1.0])  # 1 Å: the displaced ice no longer matters
    assert atom_kernel("C")(high)[0] == pytest.approx(atom_kernel("C", in_ice=False)(high)[0])


def test_potential_volume_integrates_to_the_kernels(builtin) -> None:
    pixel = 3.0
    volume = potential_volume(builtin, pixel, 64)
    integral = volume.sum() * pixel**3
    expected = sum(
        builtin.weights[builtin.groups == g].sum() * kernel(np.zeros(1))[0]
        for g, kernel in enumerate(builtin.kernels)
    )
    assert integral == pytest.approx(expected, rel=1e-3)
    centre_of_mass = np.array(np.unravel_index(np.argmax(volume), volume.shape))
    assert np.all(np.abs(centre_of_mass - 32) < 20)


def test_map_reference_round_trip(tmp_path: Path, builtin) -> None:
    pixel = 2.0
    volume = potential_volume(builtin, pixel, 96)
    path = tmp_path / "ref.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(volume)
        mrc.voxel_size = pixel
    from_map = load_reference(path)
    assert from_map.diameter == pytest.approx(builtin.diameter, rel=0.2)
    assert from_map.weights.sum() > 0.5 * len(builtin.weights) * NET_POTENTIAL_PER_ATOM


def test_resample_keeps_values_and_box(builtin) -> None:
    volume = potential_volume(builtin, 2.0, 64)
    coarse = resample_volume(volume, 2.0, 4.0)
    assert coarse.shape == (32, 32, 32)
    assert coarse.sum() * 8 == pytest.approx(volume.sum(), rel=1e-4)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.pdb", None, "no such file"),
        ("notes.txt", b"hello", "unknown reference type"),
        ("empty.pdb", b"REMARK nothing here\nEND\n", "no atoms"),
        ("bad.mrc", b"not a map at all" * 100, "cannot read MRC map"),
    ],
)
def test_bad_references_name_the_file(tmp_path: Path, name, content, reason) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ReferenceMapError, match=reason) as info:
        load_reference(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
