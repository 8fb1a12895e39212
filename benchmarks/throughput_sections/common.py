"""Shared by the sections of the throughput benchmark: settings, targets, the report
and small helpers."""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import numpy as np
import torch
from results import markdown_table

from streamdenoise.model.tiling import DEFAULT_MAX_TILE

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
"""Topaz-Denoise s/micrograph ÷ ours should be at least this (the goal)."""

TARGET_ONESHOT_RATIO = 6.0
"""Topaz-Denoise's CLI ÷ `streamdenoise denoise` on the same files, start-up included."""

TARGET_MATMUL_SHARE = 0.5
"""The model stage should reach this share of the matrix-product rate."""

TOPAZ_FILES = 8
"""At least this many files in the one-shot commands' N-file runs (fewer: Topaz's t_N − t_1
drowns in the noise of t_1); issue 13's target compares 8 files."""

STAGES = ("bin", "noise estimate", "normalise", "tile", "model", "blend", "guard")


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


Image = tuple[np.ndarray, float]
"""A micrograph in memory: (H, W) float32 array and its pixel size in Å/px."""
