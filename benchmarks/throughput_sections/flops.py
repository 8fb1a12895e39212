"""2. The model: FLOPs per pixel of ours and of Topaz-Denoise's unet."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .common import DEFAULT_TILE, progress

if TYPE_CHECKING:
    from .state import State


TOPAZ_FLOPS_SCRIPT = """
import json, torch
from torch.utils.flop_counter import FlopCounterMode
from topaz.denoise import load_model
model = load_model("unet").eval()
side = 512
try:
    net, x = model.to("meta"), torch.zeros(1, 1, side, side, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x)
except Exception:
    net, x = load_model("unet").eval(), torch.zeros(1, 1, side, side)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x)
print(json.dumps({"flops_per_pixel": counter.get_total_flops() / side**2}))
"""


class FlopCount:
    """FLOPs of one forward pass per tile side, counted once on a meta-device copy."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.cache: dict[int, float] = {}

    def per_tile(self, tile: int) -> float:
        """FLOPs of the network on one (1, 1, tile, tile) input."""
        if tile not in self.cache:
            try:
                net = copy.deepcopy(self.model).to("meta")
                x = torch.zeros(1, 1, tile, tile, device="meta")
            except Exception:  # meta unsupported: count on the real model (slower)
                net, x = self.model, torch.zeros(1, 1, tile, tile)
            counter = FlopCounterMode(display=False)
            with counter, torch.inference_mode():
                net(x)
            self.cache[tile] = float(counter.get_total_flops())
        return self.cache[tile]

    def per_pixel(self, tile: int = 512) -> float:
        """FLOPs per output pixel (the network is fully convolutional)."""
        return self.per_tile(tile) / tile**2


def topaz_flops_per_pixel(python: str) -> float:
    """FLOPs per pixel of Topaz-Denoise's pretrained unet (512² input), in its own Python."""
    done = subprocess.run(
        [python, "-c", TOPAZ_FLOPS_SCRIPT], capture_output=True, text=True, check=True
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["flops_per_pixel"])


def section_model(state: State) -> None:
    """2. FLOPs per pixel of our model and of Topaz-Denoise's unet."""
    state.report.heading("2. The model")
    ours = state.bench.flops.per_pixel(DEFAULT_TILE)
    rows: list[list[object]] = [["streamdenoise default model", f"{ours / 1e3:.1f}", ""]]
    if state.args.topaz_python:
        progress("counting Topaz-Denoise's FLOPs")
        try:
            theirs = topaz_flops_per_pixel(state.args.topaz_python)
            rows.append(["Topaz-Denoise unet", f"{theirs / 1e3:.1f}", f"{theirs / ours:.1f}× ours"])
        except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as error:
            rows.append(["Topaz-Denoise unet", "–", f"failed: {error}"])
    state.report.table(["network", "kFLOP per pixel", "note"], rows)
    state.report.line(
        "Counted with torch's FlopCounterMode on one 512² forward pass (a multiply-add is 2 "
        "FLOPs; convolutions and matrix products only). Model FLOPs per micrograph = "
        "computed tiles (with the batch padding) × FLOPs of one tile."
    )
