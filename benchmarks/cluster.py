"""Benchmark `streamdenoise batch`: throughput against the number of local Dask workers.

    python benchmarks/cluster.py [--micrographs 12] [--workers 1 2] [--device cpu]

A set of distinct simulated micrographs (1024² at 4 Å/px by default) is made once and
cached. For each worker count a `LocalCluster` of worker processes (one thread each) is
started and warmed up on one micrograph (worker start-up and model loading are not
counted), then the whole set is denoised into a fresh output directory; micrographs per hour
= micrographs / wall time of the batch (journal, task scheduling and all writes included).
Writes the "Cluster" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from distributed import Client
from results import cached_micrographs, markdown_table, write_section

from streamdenoise.distributed import BatchConfig, local_cluster, run_batch
from streamdenoise.physics.session import SessionSpec

PIXEL_SIZE = 4.0
DETECTOR_SIDE = 1024  # the "small" detector


def micrograph_set(count: int, size: int) -> list[Path]:
    """`count` distinct size² simulated micrographs at 4 Å/px, cached."""
    binning = DETECTOR_SIDE // size
    spec = SessionSpec(
        count=count, seed=91, detector="small", pixel_size=PIXEL_SIZE / binning, binning=binning
    )
    return cached_micrographs(f"cluster-benchmark-{size}", spec, "mic_", 3)


def throughput(paths: list[Path], workers: int, device: str, scratch: Path) -> tuple[float, float]:
    """(wall seconds, micrographs per hour) of one batch on `workers` local processes."""
    root = paths[0].parent
    gpu = device.startswith("cuda")
    with local_cluster(workers, 1, gpu) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        warm = BatchConfig(out_dir=scratch / f"warm-{workers}", root=root, device=device)
        run_batch(paths[:1], warm, client)
        config = BatchConfig(out_dir=scratch / f"out-{workers}", root=root, device=device)
        result = run_batch(paths, config, client)
    if result.done != len(paths):
        raise RuntimeError(f"only {result.done} of {len(paths)} done: {result.quarantined}")
    print(f"{workers} worker(s): {result.seconds:.1f} s, {result.per_hour:.0f}/h", flush=True)
    return result.seconds, result.per_hour


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micrographs", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=1024, choices=[256, 512, 1024])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    paths = micrograph_set(args.micrographs, args.size)
    scratch = Path(tempfile.mkdtemp(prefix="streamdenoise-cluster-bench-"))
    try:
        rows = []
        for workers in args.workers:
            seconds, per_hour = throughput(paths, workers, args.device, scratch)
            rows.append([workers, len(paths), f"{seconds:.1f}", f"{per_hour:.0f}"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = float(rows[0][3])
    for row in rows:
        row.append(f"{float(row[3]) / base:.2f}×")
    body = (
        f"`streamdenoise batch` on a local Dask cluster (worker processes of one thread each, "
        f"device {args.device}), {args.micrographs} simulated {args.size}² micrographs at "
        f"{PIXEL_SIZE:g} Å/px, shipped model, live mode; worker start-up and model loading "
        "excluded (a warm-up micrograph first).\n\n"
        + markdown_table(
            ["workers", "micrographs", "wall s", "micrographs/h", f"vs {args.workers[0]}"], rows
        )
    )
    write_section("Cluster", body)


if __name__ == "__main__":
    main()
