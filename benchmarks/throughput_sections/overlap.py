"""5. On CUDA: copy/compute overlap of the pinned double-buffered batch runner."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from streamdenoise.engine.batches import (
    run_batches,
)
from streamdenoise.model.inference import tweedie

from .bench import Bench, Config
from .common import TARGET_PER_HOUR, fmt, progress, synchronize
from .state import State


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
