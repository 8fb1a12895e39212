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
import os
import shutil
import tempfile
from pathlib import Path

import torch
from results import RESULTS, write_section
from throughput_sections.bench import Bench
from throughput_sections.common import GROUP, Report, load_average, progress
from throughput_sections.flops import section_model
from throughput_sections.limits import section_limits
from throughput_sections.overlap import section_overlap
from throughput_sections.sizes import section_throughput
from throughput_sections.state import State
from throughput_sections.summary import section_summary
from throughput_sections.sweep import section_sweep
from throughput_sections.topaz import section_topaz

from streamdenoise.engine.device import resolve_device


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
