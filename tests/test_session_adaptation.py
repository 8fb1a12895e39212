"""Session adaptation beside the live daemon: collect, adapt in a thread, take once."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from streamdenoise.model.modelfile import load_model
from streamdenoise.model.unet import ScoreUNet, UNetConfig
from streamdenoise.session_adaptation import AdaptationPlan, SessionAdapter

TINY = UNetConfig(base_channels=8, channel_multipliers=(1, 2), norm_groups=0)


def blobs(seed: int, size: int = 96) -> np.ndarray:
    """Poisson counts of dark Gaussian blobs (diameter ≈ 8 px) on a gradient, (size, size)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    clean = 100.0 + 0.05 * x
    for cx, cy in rng.uniform(8, size - 8, size=(12, 2)):
        clean -= 20 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 18.0)
    return rng.poisson(clean).astype(np.float32)


def plan(tmp_path: Path, steps: int, margin: float = 0.0) -> AdaptationPlan:
    """A plan for `blobs`; `margin` 0: these tiny fields gain less than the real swap
    rule's margin (tests/test_training.py tests the rule), so any gain swaps here."""
    return AdaptationPlan(
        after=4,
        steps=steps,
        diameter=8.0,
        pixel_size=4.0,
        save_to=tmp_path / "adapted_model.pt",
        provenance={"trained_by": "test"},
        learning_rate=3e-3,
        crop=32,
        margin=margin,
    )


def wait_for(adapter: SessionAdapter, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = adapter.take()
        if result is not None:
            return result
        assert not adapter.state.startswith("adaptation failed"), adapter.state
        time.sleep(0.2)
    raise AssertionError(f"adaptation did not finish: {adapter.state}")


def test_adapts_after_the_first_micrographs_and_saves_an_improved_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    resident = ScoreUNet(TINY)
    adapter = SessionAdapter(resident, plan(tmp_path, steps=60), torch.device("cpu"))
    for seed in range(3):
        adapter.offer(blobs(seed), 0.2)
    assert adapter.state == "collecting 3/4 micrographs" and adapter.take() is None
    adapter.offer(blobs(3), 0.2)
    adapter.offer(blobs(4), 0.2)  # beyond `after`: ignored
    result = wait_for(adapter)
    assert adapter.take() is None  # taken once
    assert result.improved, adapter.state
    assert adapter.state.startswith("adapted model swapped in")
    saved = load_model(tmp_path / "adapted_model.pt")
    assert saved.provenance["held_out_criterion_after"] == result.criterion_after
    assert saved.pixel_size == 4.0


def test_keeps_the_resident_model_when_nothing_improves(tmp_path: Path) -> None:
    """A zero learning rate leaves the copy as it was: not better, so not swapped or saved."""
    frozen = AdaptationPlan(**{**plan(tmp_path, steps=3).__dict__, "learning_rate": 0.0})
    adapter = SessionAdapter(ScoreUNet(TINY), frozen, torch.device("cpu"))
    for seed in range(4):
        adapter.offer(blobs(seed), 0.2)
    result = wait_for(adapter)
    assert not result.improved
    assert adapter.state.startswith("kept the resident model")
    assert not (tmp_path / "adapted_model.pt").exists()


def test_adapts_once_per_session(tmp_path: Path) -> None:
    """Micrographs that arrive after the adaptation began, or after it decided, are not
    collected again: the decided state stays and no second adaptation starts."""
    frozen = AdaptationPlan(**{**plan(tmp_path, steps=3).__dict__, "learning_rate": 0.0})
    adapter = SessionAdapter(ScoreUNet(TINY), frozen, torch.device("cpu"))
    for seed in range(4):
        adapter.offer(blobs(seed), 0.2)
    wait_for(adapter)
    decided = adapter.state
    for seed in range(4, 12):
        adapter.offer(blobs(seed), 0.2)
    assert adapter.state == decided
    time.sleep(0.5)
    assert adapter.state == decided and adapter.take() is None


def test_rejects_a_plan_without_a_held_out_micrograph(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        SessionAdapter(
            ScoreUNet(TINY),
            AdaptationPlan(1, 1, 8.0, 4.0, tmp_path / "m.pt", {}),
            torch.device("cpu"),
        )


class BrokenUNet(ScoreUNet):
    """A network whose forward pass fails with an error the training code does not expect."""

    def forward(self, *args, **kwargs):
        raise KeyError("a broken layer")


def test_any_failure_is_reported_and_nothing_is_swapped_in(tmp_path: Path) -> None:
    """A background adaptation that fails says so in its state (not stuck at "adapting"),
    leaves no result to take and saves no model; the live denoising is not its concern."""
    adapter = SessionAdapter(BrokenUNet(TINY), plan(tmp_path, steps=3), torch.device("cpu"))
    for seed in range(4):
        adapter.offer(blobs(seed), 0.2)
    deadline = time.monotonic() + 120
    while adapter.state.startswith("adapting") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert adapter.state.startswith("adaptation failed") and "a broken layer" in adapter.state
    assert adapter.take() is None
    assert not (tmp_path / "adapted_model.pt").exists()
