"""Target guidance: templates, caching, retrieval, gate, ramp, and the TSM term's sign."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamdenoise.model import guidance
from streamdenoise.model.guidance import (
    TemplateSpec,
    gate,
    guidance_ramp,
    load_templates,
    make_templates,
    retrieve_targets,
    structure_mask,
    tsm_loss,
    tsm_terms,
)
from streamdenoise.model.unet import ScoreUNet, UNetConfig
from streamdenoise.physics.density import load_reference


@pytest.fixture(scope="module")
def reference():
    return load_reference()


@pytest.fixture(scope="module")
def templates(reference):
    return make_templates(reference, TemplateSpec(pixel_size=4.0, box=64, count=12))


def test_templates_are_dark_normalised_and_low_passed(templates) -> None:
    sets = templates.sets
    assert sets.shape == (2, 12, 64, 64) and sets.dtype == np.float32
    centre = sets[:, :, 28:36, 28:36].mean(axis=(-1, -2))
    assert np.all(centre < 0)  # particles dark
    assert np.allclose(sets.mean(axis=(-1, -2)), 0, atol=0.01)  # zero but for the ±5σ clip
    assert np.allclose(sets.std(axis=(-1, -2)), 0.2, atol=0.025)  # 0.2 but for the clip
    # The 10 Å set has no power beyond 1/10 Å⁻¹; the 3 Å set (clipped at 8 Å Nyquist) has.
    k = np.hypot(np.fft.fftfreq(64)[:, None], np.fft.rfftfreq(64)[None]) / 4.0
    power = np.abs(np.fft.rfft2(sets)) ** 2
    beyond_10 = power[0][..., k > 0.101].sum() / power[0].sum()
    beyond_3 = power[1][..., k > 0.101].sum() / power[1].sum()
    assert beyond_10 < 0.002  # only what the ±5σ clip puts back
    assert beyond_3 > 10 * beyond_10
    assert templates.spread == pytest.approx(float(sets.std()))


def test_templates_with_ctf_are_still_dark(reference) -> None:
    spec = TemplateSpec(pixel_size=4.0, box=64, count=4, defocus=15000.0)
    sets = make_templates(reference, spec).sets
    assert np.all(sets[0, :, 30:34, 30:34].mean(axis=(-1, -2)) < 0)


def test_templates_are_cached(reference, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STREAMDENOISE_CACHE", str(tmp_path))
    spec = TemplateSpec(pixel_size=4.0, box=32, count=3)
    first = load_templates(reference, spec)
    assert len(list((tmp_path / "templates").glob("*.npz"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("templates rebuilt although cached")

    monkeypatch.setattr(guidance, "make_templates", refuse)
    second = load_templates(reference, spec)
    assert np.array_equal(first.sets, second.sets) and first.spread == second.spread


def test_retrieval_picks_the_matching_template() -> None:
    rng = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 8, generator=rng)
    sets = torch.randn(2, 5, 16, 16, generator=rng)
    crop_features = features[:, 3].mean(dim=0, keepdim=True) * 0 + features[0, 3][None]
    target, max_cosine = retrieve_targets(crop_features, features, sets, temperature=1e-4)
    assert max_cosine.item() == pytest.approx(1.0, abs=1e-6)
    best_second = int(
        torch.argmax(torch.nn.functional.cosine_similarity(features[1], features[0, 3][None]))
    )
    expected = (sets[0, 3] + sets[1, best_second]) / 2
    assert torch.allclose(target[0, 0], expected, atol=1e-4)


def test_gate_and_ramp() -> None:
    assert gate(torch.tensor(0.93)).item() == pytest.approx(0.5)
    values = gate(torch.tensor([0.0, 0.5, 0.9, 1.0]))
    assert torch.all(values[1:] > values[:-1])
    assert values[0] < 0.07
    assert guidance_ramp(0, 10, 20) == 0.0 and guidance_ramp(9, 10, 20) == 0.0
    assert 0 < guidance_ramp(15, 10, 20) < 1 and guidance_ramp(40, 10, 20) == 1.0


def test_tsm_direction_points_toward_the_reference_by_default() -> None:
    x_tilde = torch.zeros(1, 1, 8, 8)
    target = torch.ones(1, 1, 8, 8)
    score = torch.zeros_like(x_tilde)
    _, toward = tsm_terms(score, x_tilde, target, sigma_a=0.1, spread=0.2, toward=True)
    _, away = tsm_terms(score, x_tilde, target, sigma_a=0.1, spread=0.2, toward=False)
    assert torch.all(toward > 0) and torch.all(away < 0)


def test_structure_mask_marks_edges_only() -> None:
    image = torch.zeros(1, 1, 16, 16)
    image[..., :, 8:] = 1.0
    mask = structure_mask(image)
    assert mask[0, 0, :, 8].all() and mask.sum() == 16


def test_tsm_loss_is_gated_and_trains_the_network() -> None:
    torch.manual_seed(0)
    model = ScoreUNet(UNetConfig(base_channels=8, channel_multipliers=(1, 2), norm_groups=0))
    torch.nn.init.normal_(model.head.weight, std=0.01)
    y = torch.randn(2, 1, 32, 32) * 0.2
    target = torch.randn(2, 1, 32, 32) * 0.2
    trusted = tsm_loss(
        model,
        y,
        target,
        torch.tensor([1.0, 1.0]),
        0.1,
        0.2,
        generator=torch.Generator().manual_seed(1),
    )
    ignored = tsm_loss(
        model,
        y,
        target,
        torch.tensor([-1.0, -1.0]),
        0.1,
        0.2,
        generator=torch.Generator().manual_seed(1),
    )
    assert trusted.item() > 0
    assert ignored.item() < 0.01 * trusted.item()
    trusted.backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
