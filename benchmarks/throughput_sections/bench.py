"""Measuring one configuration of the denoiser on micrographs in memory, and the cached
simulated micrographs it runs on."""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from results import cached_micrographs
from torch import nn

from streamdenoise.engine.batches import (
    compile_by_default,
    default_batch_size,
    network_dtype,
    prepare_model,
)
from streamdenoise.engine.profiling import record_stages
from streamdenoise.io import read_micrograph
from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.model.pipeline import DenoiseSettings, denoise_prepared, fit_tile, prepare
from streamdenoise.model.tiling import plan_tiles
from streamdenoise.physics.session import DETECTORS, SessionSpec

from .common import DEFAULT_TILE, GROUP, OVERLAP, STAGES, Image, shape_text, synchronize
from .flops import FlopCount
from .limits import drop_page_cache


@dataclass(frozen=True)
class Config:
    """One way to run the denoiser: tiles per network call, torch.compile or eager,
    compute precision, maximum tile side (pixels), binned or at full resolution."""

    batch: int
    compiled: bool
    dtype: torch.dtype
    tile: int = DEFAULT_TILE
    full_resolution: bool = False

    @property
    def precision(self) -> str:
        """ "float32" or "bfloat16"."""
        return str(self.dtype).removeprefix("torch.")

    def settings(self) -> DenoiseSettings:
        """The pipeline settings of this configuration."""
        return DenoiseSettings(
            bin_factor=1.0 if self.full_resolution else None,
            tile=self.tile,
            overlap=OVERLAP,
            batch_size=self.batch,
            dtype=self.dtype,
        )

    def describe(self) -> str:
        """A short label: batch, compiled/eager, precision, max tile."""
        mode = "compiled" if self.compiled else "eager"
        return f"batch {self.batch}, {mode}, {self.precision}, max tile {self.tile}"


@dataclass
class Measurement:
    """Timings of one configuration on a set of micrographs.

    seconds: end-to-end seconds per micrograph (array in → denoised array out: bin … blend),
    one per repeat; stages: seconds per micrograph by stage, from the median repeat;
    warmup: seconds of the first network call (compiles a compiled model); tile: tile side
    used, pixels; real_tiles, computed_tiles: tiles per micrograph without / with the batch
    padding; flops: model FLOPs per micrograph (computed tiles).
    """

    config: Config
    seconds: list[float] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    warmup: float = float("nan")
    working_shape: tuple[int, int] = (0, 0)
    working_pixel: float = float("nan")
    tile: int = 0
    real_tiles: float = 0.0
    computed_tiles: float = 0.0
    flops: float = float("nan")
    error: str | None = None

    @property
    def median(self) -> float:
        """End-to-end seconds per micrograph of the median pass (the lower middle one for
        an even count, so that it is a real pass whose stages are recorded)."""
        ordered = sorted(self.seconds)
        return ordered[(len(ordered) - 1) // 2] if ordered else float("nan")

    @property
    def best(self) -> float:
        """Best end-to-end seconds per micrograph."""
        return min(self.seconds) if self.seconds else float("nan")

    @property
    def model_gflops(self) -> float:
        """Model-stage rate, GFLOP/s (counted FLOPs of the computed tiles ÷ stage seconds)."""
        seconds = self.stages.get("model", float("nan"))
        return self.flops / seconds / 1e9 if seconds > 0 else float("nan")

    @property
    def ms_per_mpx(self) -> float:
        """End-to-end milliseconds per million working pixels."""
        pixels = self.working_shape[0] * self.working_shape[1]
        return self.median * 1e3 / (pixels / 1e6) if pixels else float("nan")


class Bench:
    """The loaded model, its prepared forms and FLOP counter, on one device."""

    def __init__(self, device: torch.device, model_path: Path | None = None) -> None:
        self.device = device
        loaded = load_model(model_path or default_model_path(), device)
        self.model_pixel = loaded.pixel_size
        self.eager = prepare_model(loaded.model, device, compile_model=False)
        self.multiple = int(getattr(loaded.model, "size_multiple", 1))
        self.flops = FlopCount(self.eager)
        self.default_batch = default_batch_size(device)
        self.default_dtype = network_dtype(device)
        self.default_compiled = compile_by_default(device, self.default_dtype)

    def default_config(self, full_resolution: bool = False) -> Config:
        """The configuration the daemon runs when nothing is set."""
        return Config(
            self.default_batch,
            self.default_compiled,
            self.default_dtype,
            DEFAULT_TILE,
            full_resolution,
        )

    def network(self, config: Config) -> nn.Module:
        """The model for `config`: the eager one, or a freshly compiled one."""
        if not config.compiled:
            return self.eager
        torch._dynamo.reset()  # compile from scratch, so its time is the real warm-up
        return prepare_model(self.eager, self.device, compile_model=True)

    def warm_up(self, net: nn.Module, config: Config, tile: int) -> float:
        """Seconds of one batch through `net` the way the pipeline calls it (compiles)."""
        amp = config.dtype != torch.float32
        x = torch.zeros(config.batch, tile, tile, device=self.device)
        synchronize(self.device)
        start = time.perf_counter()
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=config.dtype, enabled=amp),
        ):
            net(x[:, None])
        synchronize(self.device)
        return time.perf_counter() - start

    def tile_side(self, shape: tuple[int, int], config: Config) -> int:
        """The tile side `denoise_prepared` uses for working images of `shape`."""
        return fit_tile(*shape, config.tile, OVERLAP, self.multiple)

    def working_geometry(self, image: Image, config: Config) -> tuple[tuple[int, int], float]:
        """(H, W) and pixel size (Å/px) of `image` after the binning of `config`."""
        prepared = prepare(image[0], image[1], self.model_pixel, config.settings())
        return prepared.image.shape, prepared.pixel_size

    def run(self, images: list[Image], net: nn.Module, config: Config) -> dict[str, float]:
        """Bin and denoise `images` once, GROUP at a time sharing batches; returns the
        stage seconds summed over the images plus "total"."""
        settings = config.settings()
        with record_stages() as stages:
            start = time.perf_counter()
            for first in range(0, len(images), GROUP):
                prepared = [
                    prepare(data, pixel, self.model_pixel, settings)
                    for data, pixel in images[first : first + GROUP]
                ]
                denoise_prepared(prepared, net, settings, self.device)
            total = time.perf_counter() - start
        return {**stages, "total": total}

    def measure(self, images: list[Image], config: Config, repeats: int) -> Measurement:
        """Warm up once, then time `repeats` passes over `images`."""
        result = Measurement(config)
        try:
            shape, pixel = self.working_geometry(images[0], config)
            tile = self.tile_side(shape, config)
            net = self.network(config)
            result.warmup = self.warm_up(net, config, tile)
            runs = [self.run(images, net, config) for _ in range(repeats)]
        except Exception as error:  # a configuration that fails is reported, not fatal
            result.error = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
            traceback.print_exc()
            return result
        count = len(images)
        runs.sort(key=lambda run: run["total"])
        middle = runs[(len(runs) - 1) // 2]
        result.seconds = [run["total"] / count for run in runs]
        result.stages = {name: middle.get(name, 0.0) / count for name in STAGES}
        result.working_shape = shape
        result.working_pixel = pixel
        result.tile = tile
        plan = plan_tiles(*shape, tile, OVERLAP)
        computed = 0
        for first in range(0, count, GROUP):
            real = plan.n_tiles * len(images[first : first + GROUP])
            computed += math.ceil(real / config.batch) * config.batch
        result.real_tiles = plan.n_tiles
        result.computed_tiles = computed / count
        result.flops = result.computed_tiles * self.flops.per_tile(tile)
        return result


@dataclass(frozen=True)
class Input:
    """A set of cached simulated micrographs of one detector."""

    detector: str
    paths: list[Path]

    @property
    def label(self) -> str:
        """e.g. "4096×4096 falcon4i (0.93 Å/px)" (H×W)."""
        shape, pixel = DETECTORS[self.detector]
        return f"{shape_text(shape)} {self.detector} ({pixel:g} Å/px)"


def micrographs(detector: str, count: int) -> Input:
    """`count` cached simulated micrographs of `detector` (the Falcon 4i ones are the
    daemon benchmark's pool, so they are simulated only once across benchmarks)."""
    if detector == "falcon4i":
        spec = SessionSpec(count=count, seed=77, detector="falcon4i")
        return Input(detector, cached_micrographs("daemon-benchmark-pool", spec, "pool_", 2))
    spec = SessionSpec(count=count, seed=78, detector=detector)
    return Input(detector, cached_micrographs(f"throughput-{detector}", spec, "mic_", 2))


def read_cold(path: Path) -> tuple[Image, float]:
    """Read a micrograph after dropping it from the page cache; (image, seconds)."""
    drop_page_cache(path)
    start = time.perf_counter()
    micrograph = read_micrograph(path)
    seconds = time.perf_counter() - start
    return (micrograph.data, float(micrograph.pixel_size)), seconds
