"""1. The machine's limits: the matrix-product rate and the disk's bandwidth."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from streamdenoise.engine.batches import native_bfloat16
from streamdenoise.model.guidance import cache_directory

from .common import MIB, ZARR_FACTOR, progress, synchronize

if TYPE_CHECKING:
    from .state import State


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


def section_limits(state: State) -> None:
    """1. Matrix-product rate and disk bandwidth."""
    state.report.heading("1. The machine's limits")
    progress("matrix products")
    size, repeats = (2048, 2) if state.quick else (4096, 3)
    state.rates["float32"] = matmul_rate(state.device, torch.float32, size, repeats)
    if native_bfloat16(state.device):
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
