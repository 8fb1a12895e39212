"""Adapting the resident model to a running session, beside the live denoising.

The daemon hands every micrograph it has prepared (binned to the working pixel size) to a
`SessionAdapter`. After the first `after` micrographs it fine-tunes a copy of the model on
them in a background thread (`model.training.adapt`: blind-spot loss, noisy data only) and
scores it on the last quarter, held out, with the truth-free picking criterion. The daemon
takes the result once (`take`); it swaps the candidate in only when `result.improved`, so a
session whose micrographs the adaptation does not help keeps the resident model. Nothing of
the session's truth is used: there is none.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamdenoise.background import start_in_background
from streamdenoise.model.inference import normalize
from streamdenoise.model.modelfile import save_model
from streamdenoise.model.training import (
    CRITERION_MARGIN,
    AdaptationResult,
    TrainingImage,
    adapt,
)

log = logging.getLogger(__name__)

ADAPTED_MODEL = "adapted_model.pt"
"""File name of the adapted weights, in the daemon's state directory."""
CROP_MULTIPLE = 8
"""Training crops are a multiple of this (the U-Net's downsampling)."""


@dataclass(frozen=True)
class AdaptationPlan:
    """When and how to adapt: after `after` micrographs (≥ 2), `steps` optimiser steps;
    `diameter` is the particle diameter in working pixels (the criterion's scale); the
    adapted weights (working pixel size `pixel_size` Å/px) are saved to `save_to` with
    `provenance` when they improve the held-out criterion by more than `margin`."""

    after: int
    steps: int
    diameter: float
    pixel_size: float
    save_to: Path
    provenance: dict
    learning_rate: float = 3e-4
    crop: int = 128
    """Training crop side in working pixels; smaller micrographs use their own size."""
    margin: float = CRITERION_MARGIN


class SessionAdapter:
    """Collects the session's first micrographs and adapts a copy of `model` in a thread.

    `state` is a one-line description for the status line and the dashboard.
    """

    def __init__(self, model: nn.Module, plan: AdaptationPlan, device: torch.device) -> None:
        if plan.after < 2:
            raise ValueError(f"adaptation needs at least 2 micrographs, got {plan.after}")
        self._model = model
        self._plan = plan
        self._device = device
        self._images: list[TrainingImage] = []
        self._lock = threading.Lock()
        self._result: AdaptationResult | None = None
        self._started = False  # once adapting, later micrographs are not collected
        self._taken = False
        self.state = f"collecting 0/{plan.after} micrographs"

    def offer(self, binned: np.ndarray, sigma: float) -> None:
        """Add one prepared micrograph (h, w) at the working pixel size with its noise std
        σ̂ (normalised units); starts the adaptation when enough are in and ignores every
        micrograph after that (one adaptation per session). Thread-safe."""
        with self._lock:
            if self._started:
                return
            normed, _, _ = normalize(binned)
            if getattr(self._model, "noise_unit_input", False):
                normed = (normed / sigma).astype(np.float32)
            self._images.append(TrainingImage(normed))
            count = len(self._images)
            self.state = f"collecting {count}/{self._plan.after} micrographs"
            if count < self._plan.after:
                return
            self._started = True
            self.state = f"adapting on {count} micrographs ({self._plan.steps} steps)"
        start_in_background("session-adaptation", self._run)

    def _run(self) -> None:
        start = time.perf_counter()
        smallest = min(min(image.noisy.shape) for image in self._images)
        crop = min(self._plan.crop, smallest // CROP_MULTIPLE * CROP_MULTIPLE)
        try:
            result = adapt(
                self._model,
                self._images,
                diameter=self._plan.diameter,
                steps=self._plan.steps,
                learning_rate=self._plan.learning_rate,
                crop=crop,
                device=self._device,
                margin=self._plan.margin,
            )
        except Exception as error:  # a background thread that died silently would hang the state
            self.state = f"adaptation failed: {error}"
            log.exception("session adaptation failed; the resident model stays")
            return
        finally:
            self._images = []
        seconds = time.perf_counter() - start
        figures = (
            f"criterion ρ {result.criterion_after:.4f} vs resident "
            f"{result.criterion_before:.4f}, no denoising {result.criterion_input:.4f}; "
            f"{seconds:.0f} s"
        )
        if result.improved:
            provenance = self._plan.provenance | {
                "held_out_criterion_input": result.criterion_input,
                "held_out_criterion_before": result.criterion_before,
                "held_out_criterion_after": result.criterion_after,
                "steps": self._plan.steps,
                "micrographs": self._plan.after,
            }
            try:
                save_model(
                    self._plan.save_to,
                    result.model,
                    pixel_size=self._plan.pixel_size,
                    provenance=provenance,
                )
            except OSError as error:
                log.error("cannot save the adapted model to %s: %s", self._plan.save_to, error)
            self.state = f"adapted model swapped in ({figures})"
        else:
            self.state = f"kept the resident model ({figures})"
        log.info("session adaptation: %s", self.state)
        with self._lock:
            self._result = result

    def take(self) -> AdaptationResult | None:
        """The finished adaptation, once (None before it ends and after it was taken)."""
        with self._lock:
            if self._result is None or self._taken:
                return None
            self._taken = True
            return self._result
