"""Running the network over batches of tiles: the model's memory layout and compilation, the
batch size per device, copy/compute overlap on CUDA streams, and out-of-memory recovery.

Arrays in, arrays out: `run_batches` takes (N, T, T) float32 tiles on the host and returns
(N, T, T) float32 results on the host, whatever the device.

On CUDA each call keeps two slots of page-locked (pinned) host buffers and device buffers,
allocated once per (device, batch size, tile) and reused across micrographs. Batch k+1 is
copied to the GPU on a copy stream while batch k runs on the compute stream; events order
the two, so the transfers hide behind the network. On the CPU there is nothing to overlap
and batches run in turn.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from streamdenoise.errors import DeviceError

log = logging.getLogger(__name__)

Compute = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""compute(tiles (B, T, T) float32, per-tile values (B,) float32) → (B, T, T), on the device."""

CPU_BATCH_SIZE = 1
"""Tiles per call on a CPU: the activations of one 384² tile fit the caches, and the measured
time per pixel grows with the batch (benchmarks/RESULTS.md, "Throughput")."""
CUDA_BATCH_SIZE = 8
"""Tiles per call on a GPU: eight 384² tiles (1.2 Mpx) keep an H100-class device busy."""

FAKE_COMPILE = "STREAMDENOISE_TEST_FAKE_COMPILE"
"""Test hook (environment variable; tests/test_daemon_interrupt.py): when set,
`prepare_model(compile_model=True)` does not torch.compile but returns a stand-in that, on
the first call with each input shape, runs `sleep SECONDS` as a child process, as inductor
runs the C++ compiler: a Ctrl-C or a stop sent to the process group kills it, and the call
then raises a RuntimeError with a long compiler-like output. The value lists the seconds
of each compilation in turn, the last repeating (e.g. "0,60": a quick warm-up, then a slow
compilation for the first micrographs)."""

_largest_batch_that_fit: dict[tuple[str, int], int] = {}
"""(device, tile side) → the batch size an out-of-memory error reduced it to, so later
micrographs start there instead of failing again."""


def default_batch_size(device: torch.device) -> int:
    """Tiles per network call when none is configured: 1 on a CPU, 8 on a GPU."""
    return CUDA_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE


PRECISIONS: dict[str, torch.dtype | None] = {
    "auto": None,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
}
"""The network's precision by setting name; "auto" (None) is `network_dtype`'s choice."""


@lru_cache(maxsize=8)
def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 convolutions natively: a GPU that supports it,
    or a CPU whose oneDNN has AVX512-BF16 or AMX kernels (elsewhere bfloat16 is emulated
    and slower than float32). Cached: asked for every micrograph."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def network_dtype(device: torch.device, requested: torch.dtype | None = None) -> torch.dtype:
    """The dtype the network runs in (autocast): `requested`, else bfloat16 where the
    device has it natively (`native_bfloat16`), else float32. On a 2-core AMX CPU one 340²
    tile of the shipped model takes 16 ms in bfloat16 against 54 ms compiled in float32,
    with a score within 0.3 % (relative L2) of float32's (docs/performance.md)."""
    if requested is not None:
        return requested
    return torch.bfloat16 if native_bfloat16(device) else torch.float32


def compile_by_default(device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """Whether to torch.compile when the user did not say: where inductor can build code
    and it pays. On CUDA it needs Triton; on a CPU a C++ compiler ($CXX, g++, c++ or
    clang++), and float32: there the compiled network was faster in 4 of 5 comparisons
    (12 % on average) and the daemon sustained 1,760–1,811/h against 1,635/h eager
    (docs/performance.md), but in bfloat16 the eager oneDNN kernels are as fast (16 ms
    against 19 ms per 340² tile) and compiling costs 8 s."""
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    if dtype != torch.float32:
        return False
    compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return any(name and shutil.which(name) for name in compilers)


def prepare_model(model: nn.Module, device: torch.device, *, compile_model: bool) -> nn.Module:
    """The model ready for inference: eval mode, on `device`, channels_last memory format
    (faster convolutions on CPU and GPU), and optionally compiled with `torch.compile`
    (inductor, static shapes; on CPU with weight freezing, which pre-packs the convolution
    weights). The first call of a compiled model compiles it: warm it up before serving."""
    model = model.eval().to(device=device, memory_format=torch.channels_last)
    if not compile_model:
        return model
    if FAKE_COMPILE in os.environ:
        return _FakeCompiled(model, [float(v) for v in os.environ[FAKE_COMPILE].split(",")])
    options = {"freezing": True} if device.type == "cpu" else {}
    return torch.compile(model, dynamic=False, options=options)


class _FakeCompiled(nn.Module):
    """The FAKE_COMPILE test hook's stand-in for a compiled model (`_orig_mod`, as
    torch.compile's wrapper has): a slow, killable "compilation" per input shape."""

    def __init__(self, model: nn.Module, seconds: list[float]) -> None:
        super().__init__()
        self._orig_mod = model
        self.seconds = seconds
        self.shapes: set[tuple[int, ...]] = set()

    def __getattr__(self, name: str) -> object:
        """The model's attributes (noise_unit_input, size_multiple …), as torch.compile's."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._orig_mod, name)

    def forward(self, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) not in self.shapes:
            seconds = self.seconds[min(len(self.shapes), len(self.seconds) - 1)]
            compiler = subprocess.run(["sleep", str(seconds)], check=False)
            if compiler.returncode != 0:
                output = "".join(f"In file included from kernel_{i}.cpp\n" for i in range(4000))
                raise RuntimeError(f"C++ compile error (exit {compiler.returncode})\n{output}")
            self.shapes.add(tuple(x.shape))
        return self._orig_mod(x, *args)


def is_compiled(model: nn.Module) -> bool:
    """Whether `model` is a `torch.compile`d module (it then wants static batch shapes)."""
    return hasattr(model, "_orig_mod")


def map_batches(
    tiles: np.ndarray,
    fn: Callable[..., np.ndarray],
    batch_size: int,
    extra: np.ndarray | None = None,
    *,
    pad: bool = True,
) -> np.ndarray:
    """Apply `fn` (on the host) to tiles in batches of `batch_size`.

    With `pad`, the last batch is padded with copies of the last tile so that `fn` always
    sees (batch_size, tile, tile) (fixed shapes for a compiled model); the padding is
    dropped. Without it the last batch is shorter (no wasted compute in eager mode).

    Args:
        tiles: (N, tile, tile).
        fn: (b, tile, tile) → (b, tile, tile); with `extra`, called as
            fn(batch, extra_batch) with extra_batch (batch_size, ...).
        batch_size: >= 1.
        extra: optional per-tile values (N, ...) batched alongside (e.g. each tile's noise
            level when tiles of several micrographs share a batch).

    Returns:
        (N, tile, tile), dtype of fn's output.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if extra is not None and len(extra) != len(tiles):
        raise ValueError(f"extra has {len(extra)} rows for {len(tiles)} tiles")
    outputs = []
    for index, valid in batch_indices(len(tiles), batch_size, pad=pad):
        batch = tiles[index]
        result = fn(batch) if extra is None else fn(batch, extra[index])
        outputs.append(result[:valid])
    return np.concatenate(outputs)


def batch_indices(n: int, batch_size: int, *, pad: bool = True) -> Iterator[tuple[np.ndarray, int]]:
    """Indices of batches of `batch_size` over n items; with `pad` the last is filled up
    with copies of item n − 1. Yields (index (batch_size or fewer,) int, real items)."""
    for start in range(0, n, batch_size):
        valid = min(batch_size, n - start)
        index = np.arange(start, start + (batch_size if pad else valid))
        index[valid:] = n - 1
        yield index, valid


def run_batches(
    tiles: np.ndarray,
    extra: np.ndarray,
    compute: Compute,
    batch_size: int,
    device: torch.device,
    *,
    pad: bool = True,
    overlap: bool = True,
) -> np.ndarray:
    """Apply `compute` to (N, T, T) float32 `tiles` with per-tile values `extra` (N,), in
    batches of `batch_size` (with `pad`, the last is padded to that size: the static
    shapes a compiled model wants). `overlap=False` runs CUDA batches in turn, with
    synchronous copies (for measuring what the overlap gains).

    When the device runs out of memory the batch size is halved and the call repeated;
    the reduced size is kept for later calls with the same device and tile. A single tile
    that does not fit raises DeviceError.

    Returns (N, T, T) float32 on the host.
    """
    key = (str(device), int(tiles.shape[-1]))
    size = min(batch_size, _largest_batch_that_fit.get(key, batch_size))
    while True:
        try:
            if device.type == "cuda" and overlap:
                return _run_overlapped(tiles, extra, compute, size, device, pad)
            return _run_in_turn(tiles, extra, compute, size, device, pad)
        except torch.cuda.OutOfMemoryError as error:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if size == 1:
                raise DeviceError(
                    f"out of memory on {device} with a single {tiles.shape[-1]}² tile: "
                    "use a smaller --tile"
                ) from error
            size //= 2
            _largest_batch_that_fit[key] = size
            log.warning("out of memory on %s: batch size reduced to %d", device, size)


def _run_in_turn(
    tiles: np.ndarray,
    extra: np.ndarray,
    compute: Compute,
    batch_size: int,
    device: torch.device,
    pad: bool,
) -> np.ndarray:
    def one_batch(batch: np.ndarray, values: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
        return compute(x, torch.from_numpy(values).to(device)).cpu().numpy()

    return map_batches(tiles, one_batch, batch_size, extra=extra, pad=pad)


@dataclass
class _Slots:
    """Two of each buffer, so batch k+1 can be in transfer while batch k computes; one
    call uses them at a time (`lock`: the daemon's model stage and a session adaptation's
    criterion may run batches on the same device from two threads)."""

    host_in: list[torch.Tensor]
    host_out: list[torch.Tensor]
    device_in: list[torch.Tensor]
    stream: torch.cuda.Stream
    uploaded: list[torch.cuda.Event] = field(default_factory=list)
    computed: list[torch.cuda.Event] = field(default_factory=list)
    downloaded: list[torch.cuda.Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@lru_cache(maxsize=8)
def _slots(device: torch.device, batch_size: int, tile: int) -> _Slots:
    shape = (batch_size, tile, tile)
    return _Slots(
        host_in=[torch.empty(shape, pin_memory=True) for _ in range(2)],
        host_out=[torch.empty(shape, pin_memory=True) for _ in range(2)],
        device_in=[torch.empty(shape, device=device) for _ in range(2)],
        stream=torch.cuda.Stream(device),
        uploaded=[torch.cuda.Event() for _ in range(2)],
        computed=[torch.cuda.Event() for _ in range(2)],
        downloaded=[torch.cuda.Event() for _ in range(2)],
    )


def _run_overlapped(
    tiles: np.ndarray,
    extra: np.ndarray,
    compute: Compute,
    batch_size: int,
    device: torch.device,
    pad: bool,
) -> np.ndarray:
    """CUDA: upload on the copy stream, compute on the current stream, download on the
    copy stream; the host fills slot k % 2 while the GPU works on the other."""
    n, tile = len(tiles), int(tiles.shape[-1])
    slots = _slots(device, batch_size, tile)
    copy_stream, compute_stream = slots.stream, torch.cuda.current_stream(device)
    out = np.empty((n, tile, tile), dtype=np.float32)
    pending: tuple[int, int, int] | None = None  # (slot, first tile, valid tiles)

    def collect(slot: int, start: int, valid: int) -> None:
        slots.downloaded[slot].synchronize()
        out[start : start + valid] = slots.host_out[slot].numpy()[:valid]

    with slots.lock:
        for k, (index, valid) in enumerate(batch_indices(n, batch_size, pad=pad)):
            slot, start, size = k % 2, int(index[0]), len(index)
            host_in, device_in = slots.host_in[slot][:size], slots.device_in[slot][:size]
            slots.uploaded[slot].synchronize()  # the previous upload from this host slot is done
            host_in.numpy()[:] = tiles[index]
            values = torch.from_numpy(np.ascontiguousarray(extra[index])).to(device)
            with torch.cuda.stream(copy_stream):
                copy_stream.wait_event(slots.computed[slot])  # the device slot is free again
                device_in.copy_(host_in, non_blocking=True)
                slots.uploaded[slot].record(copy_stream)
            compute_stream.wait_event(slots.uploaded[slot])
            result = compute(device_in, values).float()
            slots.computed[slot].record(compute_stream)
            with torch.cuda.stream(copy_stream):
                copy_stream.wait_event(slots.computed[slot])
                slots.host_out[slot][:size].copy_(result, non_blocking=True)
                slots.downloaded[slot].record(copy_stream)
            result.record_stream(copy_stream)
            if pending is not None:
                collect(*pending)
            pending = (slot, start, valid)
        if pending is not None:
            collect(*pending)
    return out
