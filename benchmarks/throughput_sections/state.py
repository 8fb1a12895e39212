"""What the sections of the throughput benchmark share."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import torch

from .bench import Bench, Config, Measurement
from .common import Image, Report
from .limits import Disk


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
    """Topaz-Denoise's CLI, seconds per micrograph without its start-up."""
    topaz_files_s: float = float("nan")
    """Topaz-Denoise's CLI over TOPAZ_FILES files, start-up included."""
    ours_cli_s: float = float("nan")
    """`streamdenoise denoise` over the same files, start-up included."""
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
