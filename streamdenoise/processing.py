"""One micrograph from file to outputs: the steps the live daemon and the batch runner
share, so both give the same outputs for the same model and settings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamdenoise import __version__
from streamdenoise.io import read_micrograph
from streamdenoise.model.pipeline import DenoiseSettings, Prepared, denoise_prepared, prepare
from streamdenoise.outputs import OutputLayout, write_micrograph_outputs


@dataclass(frozen=True)
class OutputOptions:
    """What to write besides the denoised MRC; `model_label` names the model in sidecars."""

    float16: bool = False
    zarr: bool = True
    thumbnails: bool = True
    model_label: str = "default"


def read_prepared(
    path: Path,
    model_pixel_size: float,
    settings: DenoiseSettings,
    input_pixel_size: float | None = None,
) -> Prepared:
    """Read a micrograph strictly and bin it to the working pixel size (raises
    MicrographError naming the file when it cannot be used)."""
    micrograph = read_micrograph(path, pixel_size=input_pixel_size)
    return prepare(micrograph.data, micrograph.pixel_size, model_pixel_size, settings)


def write_results(
    layout: OutputLayout,
    source: Path,
    prepared: Prepared,
    denoised: np.ndarray,
    seconds: float,
    options: OutputOptions,
) -> dict[str, str]:
    """Write every output of one denoised micrograph; returns {kind: path}."""
    statistics = {
        "noise_sigma": prepared.sigma,
        "shape": list(denoised.shape),
        "processing_seconds": seconds,
        "model": options.model_label,
        "streamdenoise": __version__,
    }
    return write_micrograph_outputs(
        layout,
        source,
        prepared.image,
        denoised,
        prepared.pixel_size,
        statistics,
        float16=options.float16,
        zarr=options.zarr,
        thumbnails=options.thumbnails,
    )


def process_micrograph(
    path: Path,
    model: nn.Module,
    model_pixel_size: float,
    settings: DenoiseSettings,
    layout: OutputLayout,
    options: OutputOptions,
    *,
    input_pixel_size: float | None = None,
    device: torch.device | str | None = None,
) -> dict[str, str]:
    """Read, denoise and write one micrograph (the batch runner's task)."""
    start = time.perf_counter()
    prepared = read_prepared(path, model_pixel_size, settings, input_pixel_size)
    denoised = denoise_prepared([prepared], model, settings, device)[0]
    return write_results(layout, path, prepared, denoised, time.perf_counter() - start, options)
