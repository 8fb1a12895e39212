"""Rotations and projections: uniform rotations, volume vs point-scatterer projections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamdenoise.physics.density import load_reference, potential_volume
from streamdenoise.physics.projection import (
    project_volume,
    random_rotations,
    render_projections,
)


def test_random_rotations_are_proper_and_uniform() -> None:
    rotations = random_rotations(4000, np.random.default_rng(0))
    identity = np.einsum("nij,nkj->nik", rotations, rotations)
    assert np.allclose(identity, np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rotations), 1.0)
    # Uniform on SO(3): the rotated z axis is uniform on the sphere, mean cos = 0, var = 1/3.
    z = rotations[:, :, 2]
    assert np.abs(z.mean(axis=0)).max() < 0.05
    assert np.allclose((z**2).mean(axis=0), 1 / 3, atol=0.03)


def test_project_volume_moves_an_offset_blob_with_the_rotation() -> None:
    size = 32
    z, y, x = np.mgrid[0:size, 0:size, 0:size] - size // 2
    blob = np.exp(-((x - 6) ** 2 + y**2 + z**2) / 4.0).astype(np.float32)
    quarter_turn_about_z = torch.tensor([[[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]])
    identity = torch.eye(3)[None]
    rotations = torch.cat([identity, quarter_turn_about_z])
    straight, turned = project_volume(torch.from_numpy(blob), rotations)
    assert np.unravel_index(int(straight.argmax()), straight.shape) == (16, 22)
    assert np.unravel_index(int(turned.argmax()), turned.shape) == (22, 16)  # x → y
    assert float(straight.sum()) == pytest.approx(float(blob.sum()), rel=1e-4)


def test_volume_and_scatterer_projections_agree() -> None:
    reference = load_reference()
    pixel, box = 4.0, 64
    volume = torch.from_numpy(potential_volume(reference, pixel, box))
    rotations = random_rotations(3, np.random.default_rng(5))
    from_volume = project_volume(volume, torch.from_numpy(rotations).float()).numpy() * pixel
    from_points = render_projections(reference, rotations, box, pixel)
    for a, b in zip(from_volume, from_points, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
        assert a.sum() == pytest.approx(b.sum(), rel=0.02)


def test_the_views_of_a_hollow_shell_are_one_ring() -> None:
    """Averaged about its centre, a hollow shell (60/40 Å) projects to the same radially
    symmetric ring from every orientation: brightest (most potential) near the inner
    radius, less at the centre, nothing outside the outer radius; its views agree, so they
    are one."""
    from streamdenoise.physics.density import scatterers_from_map
    from streamdenoise.physics.projection import reference_views
    from streamdenoise.physics.shapes import hollow_shell

    shell = scatterers_from_map(hollow_shell(60.0, 40.0, 2.0), 2.0, "shell")
    views = reference_views(shell, 64, 4.0, views=3, count=12)
    assert views.shape == (1, 64, 64) and views.dtype == np.float32
    np.testing.assert_allclose(views[0], views[0].T, atol=1e-4 * views.max())  # symmetric
    profile = views[0, 32, 32:]
    peak = int(np.argmax(profile))
    assert 8 <= peak <= 14  # 32–56 Å: at the inner radius (40 Å = 10 px), not the centre
    assert profile[0] < 0.9 * profile[peak]
    assert profile[18:].max() < 0.1 * profile[peak]  # beyond 72 Å (the outer radius 60 Å)


def test_the_views_of_a_rod_tell_side_from_end() -> None:
    """A rod (200 Å long, 20 Å radius) seen end-on is a compact dense disc, seen from the
    side a long faint bar: its views are grouped apart, one of them reaching out to near
    half its length, another held close to its radius (averaged about the centre, so the
    bar becomes a faint wide disc and the end-on disc keeps a tail from tilted views)."""
    from streamdenoise.physics.density import scatterers_from_map
    from streamdenoise.physics.projection import reference_views
    from streamdenoise.physics.shapes import rod

    bar = scatterers_from_map(rod(200.0, 20.0, 4.0), 4.0, "rod")
    views = reference_views(bar, 64, 4.0, views=3, count=32)
    profiles = views[:, 32, 32:]
    reach = [(p > 0.1 * p.max()).sum() for p in profiles]  # px from the centre
    assert max(reach) >= 18  # ≥ 72 Å: a side view (half its length is 100 Å)
    assert min(reach) <= 12  # ≤ 48 Å: an end-on view (its radius is 20 Å)
    centre = profiles[:, 0]
    assert centre.max() > 2 * centre.min()  # end-on views are denser at the centre
