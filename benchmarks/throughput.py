"""Throughput of the denoiser against the machine's limits and against Topaz-Denoise.

    python benchmarks/throughput.py [--device auto|cpu|cuda] [--micrographs 2]
        [--max-batch 8] [--topaz-python .venv-topaz/bin/python] [--model MODEL.pt]
        [--quick] [--no-write]

1. The machine's limits: the best fp32 (and on CUDA bf16) 4096² matrix-product rate in
   GFLOP/s, and the disk's write (fsync) and read (page cache dropped) bandwidth on the
   cache directory, which give an I/O floor per micrograph.
2. The model: FLOPs per pixel (torch's FlopCounterMode), FLOPs per micrograph from the
   tiling plan; Topaz-Denoise's unet FLOPs per pixel when its Python is given.
3. Throughput of the default configuration on 1024², 4096² (Falcon 4i) and 4092×5760 (K3)
   simulated micrographs, binned to the model's pixel size and at full resolution, with
   where the time goes; then a sweep on the binned 4096² case over batch size, eager vs
   compiled, float32 vs bfloat16 and maximum tile side.
4. Topaz-Denoise side by side on the same binned micrographs (its CLI, import excluded),
   with the quality figures of the "Quality" section of RESULTS.md beside the speed.
5. On CUDA: copy/compute overlap of the pinned double-buffered batch runner.
6. Summary lines against the targets and the figures to compare runs with.

Writes the "Throughput" section of benchmarks/RESULTS.md (unless --quick or --no-write).
--quick: one 1024² micrograph, a tiny sweep, 64 MiB disk test, 2048² matmul.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from results import RESULTS, cached_micrographs, markdown_table, write_section
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from streamdenoise.engine.batches import (
    compile_by_default,
    default_batch_size,
    prepare_model,
    run_batches,
)
from streamdenoise.engine.device import resolve_device
from streamdenoise.engine.profiling import record_stages
from streamdenoise.io import read_micrograph, write_mrc_atomic
from streamdenoise.model.guidance import cache_directory
from streamdenoise.model.inference import tweedie
from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.model.pipeline import DenoiseSettings, denoise_prepared, fit_tile, prepare
from streamdenoise.model.tiling import DEFAULT_MAX_TILE, plan_tiles
from streamdenoise.physics.session import DETECTORS, SessionSpec

MIB = 2**20
OVERLAP = 32
"""Tile overlap in pixels (the default)."""
DEFAULT_TILE = DEFAULT_MAX_TILE
"""Maximum tile side in pixels (the default)."""
GROUP = 4
"""Micrographs whose tiles share network batches in one call (the daemon's default)."""
ZARR_FACTOR = 1.33
"""OME-Zarr bytes written per byte of the denoised float32 image (the multiscale pyramid)."""
TARGET_PER_HOUR = 1000.0
"""Micrographs per hour a GPU should sustain on 4096² inputs."""
TARGET_TOPAZ_RATIO = 10.0
"""Topaz-Denoise s/micrograph ÷ ours should be at least this."""
TARGET_MATMUL_SHARE = 0.5
"""The model stage should reach this share of the matrix-product rate."""
TOPAZ_FILES = 4
"""At least this many files in Topaz-Denoise's N-file run (fewer: the difference t_N − t_1
drowns in the noise of t_1)."""
STAGES = ("bin", "noise estimate", "normalise", "tile", "model", "blend", "guard")
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


# -- output -------------------------------------------------------------------------------


class Report:
    """Prints tables and lines as they come and keeps them as markdown. On a terminal the
    tables are drawn with rich (when installed); otherwise they are printed as markdown."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.console: Any = None
        if sys.stdout.isatty():
            try:
                from rich.console import Console

                self.console = Console()
            except ImportError:
                pass

    def heading(self, title: str) -> None:
        """A subsection heading."""
        self.parts.append(f"### {title}")
        if self.console is not None:
            self.console.rule(f"[bold]{title}")
        else:
            print(f"\n### {title}\n", flush=True)

    def line(self, text: str) -> None:
        """A paragraph or bullet (markdown)."""
        self.parts.append(text)
        print(text, flush=True)

    def table(self, header: list[str], rows: list[list[object]], title: str = "") -> None:
        """A table, printed now and kept as markdown."""
        self.parts.append((f"**{title}**\n\n" if title else "") + markdown_table(header, rows))
        if self.console is not None:
            from rich.table import Table

            table = Table(title=title or None)
            for name in header:
                table.add_column(name, overflow="fold")
            for row in rows:
                table.add_row(*(str(cell) for cell in row))
            self.console.print(table)
        else:
            print((f"{title}\n\n" if title else "") + markdown_table(header, rows) + "\n")

    def markdown(self) -> str:
        """Everything so far as one markdown body."""
        return "\n\n".join(self.parts)


def progress(text: str) -> None:
    """A progress note on stderr (not part of the report)."""
    print(f"… {text}", file=sys.stderr, flush=True)


def fmt(value: float, digits: int = 2) -> str:
    """A number with `digits` decimals, or "–" when it is not finite."""
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def shape_text(shape: tuple[int, ...]) -> str:
    """(H, W) → "H×W"."""
    return "×".join(str(s) for s in shape)


def load_average() -> str:
    """The 1-minute load average and the number of cores, e.g. "2.7 on 2 cores"."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        return f"{os.getloadavg()[0]:.1f} on {cores} cores"
    except OSError:
        return f"unknown on {cores} cores"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- 1. the machine's limits --------------------------------------------------------------


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """Best rate of a (size × size) @ (size × size) product in GFLOP/s (2·size³ FLOPs),
    after one warm-up product."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)

    def once() -> float:
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        return time.perf_counter() - start

    once()
    best = min(once() for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def filesystem_of(path: Path) -> str:
    """The type and mount point of the filesystem holding `path`, from /proc/mounts."""
    target = str(path.resolve())
    best = ("", "unknown")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            mount = parts[1].replace("\\040", " ")
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best[0]):
                best = (mount, parts[2])
    except OSError:
        pass
    return f"{best[1]} ({best[0] or '?'})"


def drop_page_cache(path: Path) -> bool:
    """Ask the kernel to drop `path`'s clean pages from the page cache; False if unsupported."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


@dataclass(frozen=True)
class Disk:
    """Sequential disk bandwidth in MB/s (10⁶ bytes/s) and how it was measured."""

    write_mb_s: float
    read_mb_s: float
    total_mib: int
    file_mib: int
    folder: Path
    filesystem: str
    cache_dropped: bool


def disk_bandwidth(folder: Path, total_mib: int, file_mib: int) -> Disk:
    """Write `total_mib` MiB of random bytes in files of `file_mib` MiB (each fsynced), then
    read them back after dropping them from the page cache; the files are deleted after."""
    scratch = folder / f".throughput-disk-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    block = np.random.default_rng(0).integers(0, 256, file_mib * MIB, dtype=np.uint8).tobytes()
    paths = [scratch / f"block_{i:03d}.bin" for i in range(max(1, total_mib // file_mib))]
    try:
        start = time.perf_counter()
        for path in paths:
            with open(path, "wb") as handle:
                handle.write(block)
                handle.flush()
                os.fsync(handle.fileno())
        write_seconds = time.perf_counter() - start
        dropped = all([drop_page_cache(path) for path in paths])
        buffer = bytearray(8 * MIB)
        start = time.perf_counter()
        for path in paths:
            with open(path, "rb", buffering=0) as handle:
                while handle.readinto(buffer):
                    pass
        read_seconds = time.perf_counter() - start
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
        scratch.rmdir()
    total = len(paths) * file_mib * MIB
    return Disk(
        write_mb_s=total / write_seconds / 1e6,
        read_mb_s=total / read_seconds / 1e6,
        total_mib=len(paths) * file_mib,
        file_mib=file_mib,
        folder=folder,
        filesystem=filesystem_of(folder),
        cache_dropped=dropped,
    )


def io_floor(input_bytes: int, working_pixels: int, disk: Disk) -> float:
    """Seconds per micrograph the disk alone needs: read the input, write the denoised
    float32 MRC and its OME-Zarr copy (ZARR_FACTOR × the MRC)."""
    output_bytes = working_pixels * 4 * (1 + ZARR_FACTOR)
    return input_bytes / (disk.read_mb_s * 1e6) + output_bytes / (disk.write_mb_s * 1e6)


# -- 2. the model -------------------------------------------------------------------------


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


# -- 3. throughput ------------------------------------------------------------------------


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


Image = tuple[np.ndarray, float]
"""A micrograph in memory: (H, W) float32 array and its pixel size in Å/px."""


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
        self.default_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        self.default_compiled = compile_by_default(device)

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
        amp = config.dtype != torch.float32 and self.device.type == "cuda"
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


# -- 4. Topaz-Denoise ---------------------------------------------------------------------


def topaz_seconds(
    python: str, images: list[Image], count: int, gpu: bool
) -> tuple[float, float, float, str]:
    """Topaz-Denoise's CLI (pretrained unet) over 1 file and over `count` files, one process
    each, on GPU 0 when `gpu` (falling back to the CPU if its torch has no CUDA), else the
    CPU. Returns (t_1 s, t_N s, seconds per micrograph = (t_N − t_1)/(N − 1), which leaves
    out its import and model load, and the device it ran on)."""
    with tempfile.TemporaryDirectory(prefix="throughput-topaz-") as folder:
        root = Path(folder)
        (root / "in").mkdir()
        paths = []
        for index in range(count):
            data, pixel = images[index % len(images)]
            paths.append(root / "in" / f"m{index:03d}.mrc")
            write_mrc_atomic(paths[-1], data, pixel)

        def timed(files: list[Path], out: str, device: str) -> float:
            command = [python, "-m", "topaz.commands.denoise", "-d", device, "-m", "unet"]
            start = time.perf_counter()
            subprocess.run(
                [*command, "-o", str(root / out), *map(str, files)],
                check=True,
                capture_output=True,
            )
            return time.perf_counter() - start

        device = "0" if gpu else "-1"
        try:
            one = timed(paths[:1], "out1", device)
        except subprocess.CalledProcessError:
            if not gpu:
                raise
            device = "-1"
            one = timed(paths[:1], "out1", device)
        many = timed(paths, "outN", device)
    return one, many, (many - one) / (count - 1), "GPU 0" if device == "0" else "CPU"


def quality_figures(path: Path = RESULTS) -> list[tuple[str, dict[str, dict[str, str]]]]:
    """PSNR dB and AP per method and dose from the "## Quality" section of RESULTS.md:
    [(dose heading, {method: {"PSNR dB": …, "AP": …}})]; empty when there is none."""
    if not path.exists():
        return []
    found = re.search(r"^## Quality\n(.*?)(?=^## |\Z)", path.read_text(), re.S | re.M)
    if not found:
        return []
    figures = []
    for block in re.split(r"^### ", found.group(1), flags=re.M)[1:]:
        heading, _, body = block.partition("\n")
        rows = [
            [cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in body.splitlines()
            if line.strip().startswith("|")
        ]
        if len(rows) < 3:
            continue
        header = rows[0]
        methods = {}
        for row in rows[2:]:
            values = dict(zip(header, row, strict=False))
            methods[row[0]] = {name: values.get(name, "?") for name in ("PSNR dB", "AP")}
        figures.append((heading.split(",")[0].strip(), methods))
    return figures


# -- 5. CUDA copy/compute overlap ---------------------------------------------------------


@contextmanager
def cuda_timer(results: list[float]) -> Iterator[None]:
    """Append the enclosed GPU work's milliseconds (CUDA events) to `results`."""
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    yield
    end.record()
    end.synchronize()
    results.append(begin.elapsed_time(end))


def cuda_overlap(bench: Bench, config: Config, count: int, tile: int) -> dict[str, float]:
    """`run_batches` with overlapped copies vs in turn (`overlap=False`) on `count` random
    tiles of `tile`² in batches of config.batch, and one batch's copies and compute alone
    (ms, CUDA events, pinned and pageable host memory). Seconds for the whole runs."""
    device, batch = bench.device, config.batch
    amp = config.dtype != torch.float32
    net = bench.eager
    rng = np.random.default_rng(0)
    tiles = (0.2 * rng.standard_normal((count, tile, tile))).astype(np.float32)
    values = np.full(count, 0.3, dtype=np.float32)

    def compute(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=config.dtype, enabled=amp):
            score = net(x[:, None])[:, 0].float()
        return tweedie(x, score, sigma[:, None, None])

    def whole(overlap: bool) -> float:
        synchronize(device)
        start = time.perf_counter()
        run_batches(tiles, values, compute, batch, device, overlap=overlap)
        synchronize(device)
        return time.perf_counter() - start

    with torch.inference_mode():
        whole(True)  # warm-up (allocations, cuDNN plans)
        whole(False)
        overlapped = statistics.median(whole(True) for _ in range(3))
        serial = statistics.median(whole(False) for _ in range(3))
        host = torch.from_numpy(tiles[:batch].copy())
        pinned = host.pin_memory()
        sigma = torch.from_numpy(values[:batch]).to(device)
        on_device = pinned.to(device)
        pinned_out = torch.empty_like(pinned).pin_memory()
        timings: dict[str, list[float]] = {
            k: [] for k in ("h2d pinned", "h2d pageable", "compute", "d2h pinned", "d2h pageable")
        }
        for _ in range(5):
            with cuda_timer(timings["h2d pinned"]):
                on_device.copy_(pinned, non_blocking=True)
            with cuda_timer(timings["h2d pageable"]):
                on_device = host.to(device)
            with cuda_timer(timings["compute"]):
                result = compute(on_device, sigma)
            with cuda_timer(timings["d2h pinned"]):
                pinned_out.copy_(result, non_blocking=True)
            with cuda_timer(timings["d2h pageable"]):
                result.cpu()
    figures = {name: statistics.median(ms[1:]) for name, ms in timings.items()}
    batches = math.ceil(count / batch)
    copies_serial = batches * (figures["h2d pageable"] + figures["d2h pageable"]) / 1e3
    copies_pinned = batches * (figures["h2d pinned"] + figures["d2h pinned"]) / 1e3
    figures.update(
        overlapped_s=overlapped,
        serial_s=serial,
        batches=batches,
        copies_serial_s=copies_serial,
        copies_pinned_s=copies_pinned,
        compute_s=batches * figures["compute"] / 1e3,
        efficiency=(serial - overlapped) / copies_serial if copies_serial > 0 else float("nan"),
    )
    return figures


# -- the run ------------------------------------------------------------------------------


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """Whether this device runs the model in bfloat16 natively, and why not."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, ""
        return False, f"{torch.cuda.get_device_name(device)} has no native bfloat16"
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if not native:
        return False, (
            "this CPU has no native bfloat16 (oneDNN reports no AVX512-BF16/AMX; it would be "
            "emulated, slower than float32), and streamdenoise uses reduced precision only "
            "on CUDA"
        )
    return False, (
        "the CPU supports bfloat16 (oneDNN), but streamdenoise.model.inference refuses "
        "reduced precision on non-CUDA devices"
    )


@dataclass
class Row:
    """One default-configuration measurement of the throughput table: the measurement, the
    median cold read of its files (s) and the I/O floor per micrograph (s)."""

    measurement: Measurement
    read_s: float
    floor_s: float

    @property
    def with_read(self) -> float:
        """Seconds per micrograph including reading the file."""
        return self.measurement.median + self.read_s


@dataclass
class State:
    """What the sections of the benchmark share."""

    args: argparse.Namespace
    device: torch.device
    report: Report
    bench: Bench
    quick: bool
    count: int
    repeats: int
    reference: str
    rates: dict[str, float] = field(default_factory=dict)
    disk: Disk | None = None
    rows: dict[tuple[str, bool], Row] = field(default_factory=dict)
    reference_images: list[Image] = field(default_factory=list)
    sweep: dict[Config, tuple[str, Measurement]] = field(default_factory=dict)
    fastest: Config | None = None
    topaz_s: float = float("nan")
    ours_denoise_only_s: float = float("nan")
    quality: list[tuple[str, dict[str, dict[str, str]]]] = field(default_factory=list)
    overlap: dict[str, float] | None = None

    @property
    def cuda(self) -> bool:
        """Whether the benchmark runs on a GPU."""
        return self.device.type == "cuda"

    def rate(self, config: Config) -> float:
        """The matmul rate (GFLOP/s) of `config`'s precision (fp32 when not measured)."""
        return self.rates.get(config.precision, self.rates["float32"])


def section_limits(state: State) -> None:
    """1. Matrix-product rate and disk bandwidth."""
    state.report.heading("1. The machine's limits")
    progress("matrix products")
    size, repeats = (2048, 2) if state.quick else (4096, 3)
    state.rates["float32"] = matmul_rate(state.device, torch.float32, size, repeats)
    if state.cuda:
        state.rates["bfloat16"] = matmul_rate(state.device, torch.bfloat16, size, repeats)
    where = (
        torch.cuda.get_device_name(state.device)
        if state.cuda
        else f"{torch.get_num_threads()} torch threads"
    )
    rows: list[list[object]] = [
        [
            f"matmul {size}² {name}" + (" (TF32 off)" if state.cuda and name == "float32" else ""),
            f"{rate:.0f} GFLOP/s",
            f"best of {repeats} after a warm-up, {where}",
        ]
        for name, rate in state.rates.items()
    ]
    progress("disk bandwidth")
    total_mib, file_mib = (64, 16) if state.quick else (512, 64)
    disk = state.disk = disk_bandwidth(cache_directory(), total_mib, file_mib)
    cache_note = (
        "page cache dropped first (POSIX_FADV_DONTNEED), so reads come from the disk"
        if disk.cache_dropped
        else "page cache NOT dropped (no posix_fadvise): reads may come from memory"
    )
    rows += [
        [
            "disk write",
            f"{disk.write_mb_s:.0f} MB/s",
            f"{disk.total_mib} MiB in {disk.file_mib} MiB files, each fsynced; "
            f"{disk.folder} on {disk.filesystem}",
        ],
        ["disk read", f"{disk.read_mb_s:.0f} MB/s", f"the same files, {cache_note}"],
    ]
    state.report.table(["limit", "value", "how"], rows)
    if state.cuda:
        state.report.line(
            "float32 matmul runs without TF32; cuDNN convolutions may use TF32 "
            f"(torch.backends.cudnn.allow_tf32 = {torch.backends.cudnn.allow_tf32}), so a "
            "float32 model can exceed this rate."
        )
    state.report.line(
        "I/O floor per micrograph = input bytes / read bandwidth + output bytes / write "
        f"bandwidth, outputs = the denoised float32 MRC at the working size + OME-Zarr "
        f"(~{ZARR_FACTOR}× that)."
    )


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


def section_throughput(state: State) -> None:
    """3. The default configuration on each input size, binned and at full resolution."""
    state.report.heading("3. Throughput, default configuration")
    bench, table, stage_rows = state.bench, [], []
    for detector in ["small"] if state.quick else ["small", "falcon4i", "k3"]:
        progress(f"micrographs of {detector}")
        source = micrographs(detector, state.count)
        loaded = [read_cold(path) for path in source.paths]
        images = [image for image, _ in loaded]
        read_s = statistics.median(seconds for _, seconds in loaded)
        input_bytes = int(statistics.median(path.stat().st_size for path in source.paths))
        if detector == state.reference:
            state.reference_images = images
        for full in (False, True):
            config = bench.default_config(full)
            subset = images[:1] if full and not state.cuda else images
            passes = max(1, state.args.full_repeats) if full else state.repeats
            resolution = "full resolution" if full else "binned"
            progress(f"{detector} {resolution}: {config.describe()}")
            result = bench.measure(subset, config, passes)
            pixels = result.working_shape[0] * result.working_shape[1]
            assert state.disk is not None
            row = Row(result, read_s, io_floor(input_bytes, pixels, state.disk))
            state.rows[(detector, full)] = row
            table.append(
                [
                    f"{source.label}, {resolution}",
                    fmt(result.working_pixel),
                    shape_text(result.working_shape),
                    config.batch,
                    "yes" if config.compiled else "no",
                    config.precision,
                    fmt(read_s),
                    fmt(result.median),
                    fmt(3600 / row.with_read, 0),
                    fmt(result.ms_per_mpx, 0),
                    fmt(result.flops / 1e9, 0),
                    fmt(result.model_gflops, 1),
                    fmt(100 * result.model_gflops / state.rate(config), 0),
                    fmt(row.floor_s, 3),
                    result.error or f"{len(subset)} × {passes}",
                ]
            )
            stage_rows.append(
                [
                    f"{detector}, {resolution}",
                    fmt(read_s),
                    *(fmt(result.stages.get(name, float("nan"))) for name in STAGES),
                    fmt(result.median),
                ]
            )
    header = ["input (H×W)", "working Å/px", "working shape", "batch", "compiled"]
    header += ["precision", "read s", "s / micrograph", "micrographs / h (with read)"]
    header += ["ms / working Mpx", "model GFLOP / micrograph", "model GFLOP/s", "% of matmul"]
    header += ["I/O floor s"]
    state.report.table([*header, "micrographs × passes"], table)
    state.report.table(
        ["input", "read", *STAGES, "s / micrograph"],
        stage_rows,
        title="Where the time goes, s per micrograph",
    )
    state.report.line(
        "s / micrograph: end to end from the array in memory (bin … blend), median pass; "
        "read s: reading the file with the page cache dropped, timed apart."
        + ("" if state.cuda else " On the CPU full resolution runs one micrograph, once.")
    )


def sweep_plan(state: State) -> list[tuple[str, Config]]:
    """(varied factor, configuration) of the sweep, each factor changed alone."""
    default = state.bench.default_config()
    batches = [b for b in (2**i for i in range(8)) if b <= max(1, state.args.max_batch)]
    batches = batches[:2] if state.quick else batches
    tiles = [128, 256] if state.quick else [256, 384, 512, 1024]
    plan = [("batch", replace(default, batch=b)) for b in batches]
    plan.append(("compiled", replace(default, compiled=not default.compiled)))
    if bf16_support(state.device)[0]:
        plan += [("precision", replace(default, dtype=d)) for d in (torch.float32, torch.bfloat16)]
    return plan + [("max tile", replace(default, tile=t)) for t in tiles]


def best_together(default: Config, measured: dict[Config, Measurement]) -> Config:
    """Each factor at the setting that was fastest when that factor alone was changed from
    `default` (so a factor is not credited with the gain of another)."""
    combined = default
    for name in ("batch", "compiled", "dtype", "tile"):
        alone = {
            config: result
            for config, result in measured.items()
            if all(
                getattr(config, other) == getattr(default, other)
                for other in ("batch", "compiled", "dtype", "tile", "full_resolution")
                if other != name
            )
        }
        fastest = min(alone, key=lambda config: alone[config].median)
        combined = replace(combined, **{name: getattr(fastest, name)})
    return combined


def section_sweep(state: State) -> None:
    """3b. Batch size, eager vs compiled, precision and tile side on the reference input."""
    state.report.heading(f"3b. Sweep on the binned {state.reference} micrographs")
    default = state.bench.default_config()
    if not state.reference_images or (state.reference, False) not in state.rows:
        return
    state.sweep[default] = ("default", state.rows[(state.reference, False)].measurement)
    for varied, config in sweep_plan(state):
        if config not in state.sweep:
            progress(f"sweep: {config.describe()}")
            result = state.bench.measure(state.reference_images, config, state.repeats)
            state.sweep[config] = (varied, result)
    valid = {c: m for c, (_, m) in state.sweep.items() if not m.error}
    if default in valid and (combined := best_together(default, valid)) not in state.sweep:
        progress(f"sweep: the best of each factor together: {combined.describe()}")
        result = state.bench.measure(state.reference_images, combined, state.repeats)
        state.sweep[combined] = ("best together", result)
        if not result.error:
            valid[combined] = result
    state.fastest = min(valid, key=lambda c: valid[c].median) if valid else None
    rows: list[list[object]] = []
    for config, (varied, result) in state.sweep.items():
        note = result.error or ("◀ fastest" if config == state.fastest else "")
        rows.append(
            [
                varied,
                config.batch,
                "yes" if config.compiled else "no",
                config.precision,
                config.tile,
                result.tile or "–",
                f"{result.computed_tiles:g} / {result.real_tiles:g}" if result.tile else "–",
                fmt(result.warmup),
                fmt(result.median),
                fmt(result.best),
                fmt(3600 / result.median, 0),
                fmt(result.model_gflops, 1),
                fmt(100 * result.model_gflops / state.rate(config), 0),
                note,
            ]
        )
    supported, why_not = bf16_support(state.device)
    if not supported:
        rows.append(["precision", default.batch, "no", "bfloat16", *["–"] * 9, "unsupported"])
    header = ["varied", "batch", "compiled", "precision", "max tile", "tile"]
    header += ["tiles computed / real", "warm-up s", "s / micrograph", "best s"]
    header += ["micrographs / h (no read)", "model GFLOP/s", "% of matmul", "note"]
    state.report.table(header, rows)
    state.report.line(
        "Each factor varied alone from the default, then the best of each together. warm-up "
        "s: the first network call (for a compiled model, the compilation). tiles computed / "
        "real: per micrograph, with the padding of the last batch."
    )
    if not supported:
        state.report.line(f"bfloat16 is not supported natively here: {why_not}.")


def section_topaz(state: State) -> None:
    """4. Topaz-Denoise's CLI on the same binned micrographs, with the quality figures."""
    python = state.args.topaz_python
    row = state.rows.get((state.reference, False))
    if not python or not state.reference_images or row is None:
        return
    state.report.heading(f"4. Side by side with Topaz-Denoise ({state.reference}, binned)")
    bench, default = state.bench, state.bench.default_config()
    binned: list[Image] = []
    for data, pixel in state.reference_images:
        prepared = prepare(data, pixel, bench.model_pixel, default.settings())
        binned.append((prepared.image, prepared.pixel_size))
    progress("ours on the binned arrays")
    only = bench.measure(binned, bench.default_config(full_resolution=True), state.repeats)
    state.ours_denoise_only_s = only.median
    files = max(TOPAZ_FILES, state.count)
    progress(f"Topaz-Denoise CLI over 1 and {files} files")
    try:
        one, many, state.topaz_s, where = topaz_seconds(python, binned, files, state.cuda)
        note = f"on the {where}: t₁ {one:.1f} s, t₍{files}₎ {many:.1f} s, (t_N − t₁)/(N − 1)"
    except (subprocess.CalledProcessError, OSError) as error:
        stderr = getattr(error, "stderr", b"") or b""
        note = f"failed: {error} {stderr.decode(errors='replace')[-300:]}"
    shape = shape_text(binned[0][0].shape)
    raw_shape = shape_text(state.reference_images[0][0].shape)
    state.report.table(
        ["method", "input", "s / micrograph", "Topaz ÷ this", "note"],
        [
            ["Topaz-Denoise unet (CLI)", shape, fmt(state.topaz_s), "1.0×", note],
            [
                "streamdenoise, denoise only",
                shape,
                fmt(only.median),
                f"{fmt(state.topaz_s / only.median, 1)}×",
                f"noise estimate … blend on the binned array; {default.describe()}",
            ],
            [
                "streamdenoise, end to end from the file",
                f"{raw_shape} → {shape}",
                fmt(row.with_read),
                f"{fmt(state.topaz_s / row.with_read, 1)}×",
                "read + bin + denoise",
            ],
        ],
    )
    state.quality = [] if state.args.model else quality_figures()
    rows = [
        [dose, method, methods[method]["PSNR dB"], methods[method]["AP"]]
        for dose, methods in state.quality
        for method in ("Topaz-Denoise unet", "live (default model)")
        if method in methods
    ]
    if rows:
        title = "Quality beside the speed (the Quality section of RESULTS.md)"
        state.report.table(["dose", "method", "PSNR dB", "AP"], rows, title=title)
    elif state.args.model:
        state.report.line(
            'The Quality section is of the shipped model: see "Model choice" for this one.'
        )
    else:
        state.report.line("No Quality figures in RESULTS.md: run benchmarks/quality.py.")


def section_overlap(state: State) -> None:
    """5. CUDA only: copy/compute overlap of the batch runner."""
    if not (state.cuda and torch.cuda.is_available()):
        return
    state.report.heading("5. CUDA copy/compute overlap")
    progress("copy/compute overlap")
    count, tile = (16, 256) if state.quick else (64, 512)
    config = state.bench.default_config()
    o = state.overlap = cuda_overlap(state.bench, config, count, tile)
    rows: list[list[object]] = [
        ["tiles", f"{count} × {tile}², batch {config.batch}, {config.precision}"],
        ["overlapped (run_batches), s", fmt(o["overlapped_s"], 3)],
        ["serial (overlap=False), s", fmt(o["serial_s"], 3)],
        [
            "one batch host→device, pinned / pageable, ms",
            f"{o['h2d pinned']:.2f} / {o['h2d pageable']:.2f}",
        ],
        ["one batch compute, ms", fmt(o["compute"])],
        [
            "one batch device→host, pinned / pageable, ms",
            f"{o['d2h pinned']:.2f} / {o['d2h pageable']:.2f}",
        ],
        [
            f"copies of all {o['batches']:.0f} batches, pinned / pageable, s",
            f"{o['copies_pinned_s']:.3f} / {o['copies_serial_s']:.3f}",
        ],
        [f"compute of all {o['batches']:.0f} batches, s", fmt(o["compute_s"], 3)],
        [
            "overlap efficiency = (serial − overlapped) / pageable copy time",
            f"{100 * o['efficiency']:.0f}%",
        ],
    ]
    state.report.table(["figure", "value"], rows)
    row = state.rows.get(("falcon4i", False))
    if row is not None and not row.measurement.error:
        per_hour = 3600 / row.with_read
        met = "met" if per_hour >= TARGET_PER_HOUR else "NOT met"
        state.report.line(
            f"4096² micrographs (read + bin + denoise, default configuration): "
            f"{per_hour:.0f}/h (target {TARGET_PER_HOUR:.0f}/h: {met})."
        )


def section_summary(state: State) -> None:
    """6. The figures against the targets, and what to compare runs by."""
    state.report.heading("Summary")
    lines = []
    reference = state.reference
    if state.fastest is not None:
        best = state.sweep[state.fastest][1]
        lines.append(
            f"- fastest configuration on {state.device}: {state.fastest.describe()}: "
            f"{best.median:.2f} s per binned {reference} micrograph "
            f"({3600 / best.median:.0f}/h without reading)"
        )
    row = state.rows.get((reference, False))
    if row is None or row.measurement.error or state.disk is None:
        lines.append("- the default configuration failed: no figures")
        for text in lines:
            state.report.line(text)
        return
    result = row.measurement
    target = ""
    if reference == "falcon4i":
        met = "met" if 3600 / row.with_read >= TARGET_PER_HOUR else "NOT met"
        target = f" (target {TARGET_PER_HOUR:.0f}/h on a GPU: {met})"
    lines.append(
        f"- ours, default configuration ({result.config.describe()}), {reference} binned to "
        f"{shape_text(result.working_shape)} at {result.working_pixel:.2f} Å/px: "
        f"{result.median:.2f} s/micrograph from the array, {row.with_read:.2f} s with "
        f"reading: {3600 / row.with_read:.0f} micrographs/h{target}"
    )
    full = state.rows.get((reference, True))
    if full is not None and not full.measurement.error:
        lines.append(
            f"- at full resolution ({shape_text(full.measurement.working_shape)}): "
            f"{full.measurement.median:.2f} s/micrograph, {3600 / full.with_read:.0f}/h "
            "with reading"
        )
    if math.isfinite(state.topaz_s):
        ratio = state.topaz_s / row.with_read
        met = "met" if ratio >= TARGET_TOPAZ_RATIO else "NOT met"
        quality = "; ".join(
            f"{dose}: PSNR {m['live (default model)']['PSNR dB']} vs "
            f"{m['Topaz-Denoise unet']['PSNR dB']} dB, AP {m['live (default model)']['AP']} "
            f"vs {m['Topaz-Denoise unet']['AP']}"
            for dose, m in state.quality
            if "live (default model)" in m and "Topaz-Denoise unet" in m
        )
        lines.append(
            f"- Topaz-Denoise {state.topaz_s:.2f} s/micrograph = "
            f"{state.topaz_s / state.ours_denoise_only_s:.1f}× ours denoise-only, "
            f"{ratio:.1f}× ours end to end from the file (target ≥ {TARGET_TOPAZ_RATIO:.0f}×: "
            f"{met})" + (f"; quality ours vs Topaz: {quality}" if quality else "")
        )
    rate = state.rate(result.config)
    share = result.model_gflops / rate
    met = "met" if share >= TARGET_MATMUL_SHARE else "NOT met"
    lines.append(
        f"- model stage {result.model_gflops:.1f} GFLOP/s = {100 * share:.0f}% of the "
        f"{result.config.precision} matmul rate {rate:.0f} GFLOP/s (target ≥ "
        f"{100 * TARGET_MATMUL_SHARE:.0f}%: {met})"
    )
    bound = "the disk" if row.floor_s > result.median else "compute"
    lines.append(
        f"- I/O floor {row.floor_s:.3f} s vs compute {result.median:.2f} s per micrograph "
        f"(read {state.disk.read_mb_s:.0f} MB/s, write {state.disk.write_mb_s:.0f} MB/s): "
        f"bound by {bound}"
    )
    if state.overlap is not None:
        lines.append(
            f"- CUDA copy/compute overlap efficiency {100 * state.overlap['efficiency']:.0f}% "
            f"(serial {state.overlap['serial_s']:.3f} s → overlapped "
            f"{state.overlap['overlapped_s']:.3f} s)"
        )
    lines.append(
        f"- for regressions compare: binned {reference} s/micrograph ({result.median:.2f}) "
        f"and micrographs/h with read ({3600 / row.with_read:.0f}), ms per working Mpx "
        f"({result.ms_per_mpx:.0f}), model GFLOP/s ({result.model_gflops:.1f}) as a share "
        f"of the matmul rate ({100 * share:.0f}% of {rate:.0f} GFLOP/s; the share "
        "normalises for the machine), the fastest configuration, and the Topaz ratio"
    )
    lines.append(f"- load average at the end: {load_average()}")
    for text in lines:
        state.report.line(text)


def main() -> None:
    """Run the benchmark, print the report and (unless --quick/--no-write) write it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N].")
    parser.add_argument("--topaz-python", default=None, help="Python of a topaz-em venv.")
    parser.add_argument(
        "--model", type=Path, default=None, help="Model file (default: the shipped model)."
    )
    parser.add_argument("--micrographs", type=int, default=2, help="Per input size.")
    parser.add_argument("--max-batch", type=int, default=8, help="Largest batch in the sweep.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes, binned.")
    parser.add_argument("--full-repeats", type=int, default=1, help="Timed passes, full res.")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes; nothing written.")
    parser.add_argument("--no-write", action="store_true", help="Do not touch RESULTS.md.")
    args = parser.parse_args()
    own_cache = "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    if own_cache:  # compile warm-up times are cold compilations, run after run
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="throughput-inductor-")
    try:
        run(args)
    finally:
        if own_cache:
            shutil.rmtree(os.environ.pop("TORCHINDUCTOR_CACHE_DIR"), ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    """All sections, in order; then print and (unless --quick/--no-write) write the report."""
    device = resolve_device(args.device)
    report = Report()
    progress("loading the model")
    state = State(
        args=args,
        device=device,
        report=report,
        bench=Bench(device, args.model),
        quick=args.quick,
        count=1 if args.quick else max(1, args.micrographs),
        repeats=2 if args.quick else max(1, args.repeats),
        reference="small" if args.quick else "falcon4i",
    )
    report.line(
        f"Live denoising with {args.model or 'the shipped default model'} on simulated "
        "micrographs (cached). "
        "Each measurement: one warm-up network call (it compiles a compiled model), then "
        f"timed passes over all micrographs, up to {GROUP} sharing network batches as in "
        f"the daemon. Compilations start from an empty inductor cache unless "
        f"TORCHINDUCTOR_CACHE_DIR is set. Device: {device}; torch threads: "
        f"{torch.get_num_threads()}; load average at the start {load_average()} (other "
        "processes on the machine slow every figure)."
        + (" **Quick run: tiny sizes, not a measurement.**" if args.quick else "")
    )
    section_limits(state)
    section_model(state)
    section_throughput(state)
    section_sweep(state)
    section_topaz(state)
    section_overlap(state)
    section_summary(state)
    if args.quick or args.no_write:
        print("(RESULTS.md not written: --quick or --no-write)", flush=True)
    else:
        write_section("Throughput", report.markdown())
        print(f"wrote the Throughput section of {RESULTS}", flush=True)


if __name__ == "__main__":
    main()
