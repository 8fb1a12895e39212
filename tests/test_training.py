"""Training: data preparation, crops, loss decrease, exact resume, guidance, adaptation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamdenoise.model.guidance import TemplateSpec, make_templates
from streamdenoise.model.training import (
    CRITERION_MARGIN,
    AdaptationResult,
    TrainConfig,
    adapt,
    prepare_image,
    sample_crops,
    train,
)
from streamdenoise.model.unet import ScoreUNet, UNetConfig
from streamdenoise.physics.density import load_reference

TINY = UNetConfig(base_channels=8, channel_multipliers=(1, 2), norm_groups=0)


def blobs(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A clean image of dark Gaussian blobs on a gradient, and a Poisson-noisy copy."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    clean = 100.0 + 0.05 * x
    for cx, cy in rng.uniform(8, size - 8, size=(12, 2)):
        clean -= 20 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 18.0)
    return rng.poisson(clean).astype(np.float32), clean.astype(np.float32)


def _pair(seed: int) -> tuple[np.ndarray, float, float, np.ndarray]:
    noisy, clean = blobs(seed)
    return noisy, 4.0, 4.0, clean


@pytest.fixture(scope="module")
def pairs():
    return [prepare_image(*_pair(seed)) for seed in range(4)]


def test_prepare_image_shares_the_normalisation(pairs) -> None:
    noisy, clean = blobs(0, 192)
    image = prepare_image(noisy, 2.0, 4.0, clean)
    assert image.noisy.shape == (96, 96) and image.clean.shape == (96, 96)
    assert abs(float((image.noisy - image.clean).mean())) < 0.01
    assert float(np.corrcoef(image.noisy.ravel(), image.clean.ravel())[0, 1]) > 0.3


def test_crops_of_noisy_and_clean_are_augmented_alike(pairs) -> None:
    y, x = sample_crops(pairs, 16, 32, np.random.default_rng(0))
    assert y.shape == x.shape == (16, 1, 32, 32)
    residual = (y - x).flatten(1)
    assert torch.all(residual.std(dim=1) < 0.5)  # same region, same orientation
    with pytest.raises(ValueError, match="smaller than"):
        sample_crops(pairs, 1, 200, np.random.default_rng(0))


def test_supervised_loss_decreases(pairs) -> None:
    torch.manual_seed(0)
    model = ScoreUNet(TINY)
    state = train(
        model,
        pairs[:3],
        TrainConfig(steps=40, batch=8, crop=32, learning_rate=3e-3, validation_every=10),
        validation=pairs[3:],
    )
    losses = [h["validation_loss"] for h in state.history]
    assert losses[-1] < 0.9 * losses[0]


def test_resume_continues_exactly(pairs, tmp_path) -> None:
    config = TrainConfig(steps=12, batch=4, crop=32, validation_every=6, checkpoint_every=6)
    noisy_only = [type(p)(p.noisy) for p in pairs]
    torch.manual_seed(0)
    straight = ScoreUNet(TINY)
    train(straight, noisy_only, config)
    torch.manual_seed(0)
    interrupted = ScoreUNet(TINY)
    checkpoint = tmp_path / "run.ckpt"
    half = TrainConfig(**{**config.__dict__, "steps": 12})
    # Stop after the first checkpoint by raising from the progress callback.

    class Stop(Exception):
        pass

    def stop_at_six(step, loss, validation):
        if step == 6:
            raise Stop

    with pytest.raises(Stop):
        train(interrupted, noisy_only, half, checkpoint=checkpoint, on_step=stop_at_six)
    resumed = ScoreUNet(TINY)
    state = train(resumed, noisy_only, config, checkpoint=checkpoint, resume=True)
    assert state.step == 12 and [h["step"] for h in state.history] == [6, 12]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_guided_training_runs_and_changes_the_result(pairs) -> None:
    templates = make_templates(load_reference(), TemplateSpec(pixel_size=4.0, box=32, count=8))
    config = TrainConfig(
        steps=8, batch=4, crop=32, guidance_warmup=2, guidance_ramp=2, guidance_refresh=4
    )
    noisy_only = [type(p)(p.noisy) for p in pairs]
    plain, guided = ScoreUNet(TINY), ScoreUNet(TINY)
    guided.load_state_dict(plain.state_dict())
    torch.manual_seed(0)
    train(plain, noisy_only, config)
    torch.manual_seed(0)
    state = train(guided, noisy_only, config, templates=templates)
    assert np.isfinite(state.history[-1]["validation_loss"])
    differs = any(
        not torch.equal(a, b)
        for a, b in zip(plain.state_dict().values(), guided.state_dict().values(), strict=True)
    )
    assert differs


BLOB_DIAMETER = 8.0  # px, the blobs of `blobs`


def test_adapt_leaves_the_resident_model_untouched(pairs) -> None:
    resident = ScoreUNet(TINY)
    before = {k: v.clone() for k, v in resident.state_dict().items()}
    result = adapt(resident, pairs, diameter=BLOB_DIAMETER, steps=10, batch=4, crop=32)
    assert all(torch.equal(before[k], v) for k, v in resident.state_dict().items())
    assert result.model is not resident
    scores = (result.criterion_input, result.criterion_before, result.criterion_after)
    assert all(np.isfinite(scores))
    assert result.improved == (result.criterion_after > max(scores[:2]) + CRITERION_MARGIN)
    with pytest.raises(ValueError, match="at least two"):
        adapt(resident, pairs[:1], diameter=BLOB_DIAMETER)


@pytest.mark.parametrize(
    ("scores", "improved"),
    [
        ((0.50, 0.60, 0.62), True),  # beats the resident by more than the margin
        ((0.50, 0.60, 0.61), False),  # within the criterion's error of the resident
        ((0.93, 0.9327, 0.9375), False),  # real apoferritin: +0.005, and a lower AP
        ((0.70, 0.40, 0.69), False),  # beats the resident, not the undenoised input
        ((0.40, 0.30, 0.45), True),  # resident worse than no denoising, the candidate not
    ],
)
def test_adaptation_swap_rule(scores: tuple[float, float, float], improved: bool) -> None:
    """Swapped in only when the held-out criterion beats both the resident model and the
    undenoised input by more than the criterion's own error (scores: input, resident,
    candidate)."""
    result = AdaptationResult(ScoreUNet(TINY), *scores)
    assert result.margin == CRITERION_MARGIN
    assert result.improved is improved


def test_adaptation_learns_from_the_session(pairs) -> None:
    """An untrained (zero-score, identity) model scores exactly the input and learns from
    the session; with a zero learning rate nothing changes and nothing is swapped."""
    untrained = ScoreUNet(TINY)
    learned = adapt(
        untrained, pairs, diameter=BLOB_DIAMETER, steps=60, batch=4, crop=32, learning_rate=3e-3
    )
    assert learned.criterion_before == pytest.approx(learned.criterion_input)
    assert learned.criterion_after > learned.criterion_before
    assert learned.margin == CRITERION_MARGIN
    frozen = adapt(
        untrained, pairs, diameter=BLOB_DIAMETER, steps=5, batch=4, crop=32, learning_rate=0.0
    )
    assert frozen.criterion_after == pytest.approx(frozen.criterion_before)
    assert not frozen.improved
