"""Profile the daemon's per-micrograph path and report where each millisecond goes.

    python benchmarks/daemon_profile.py [--micrographs 10] [--device auto] [--quick] [--no-write]
        [--pool 6] [--float16] [--out DIR] [--reference MAP]

Runs `streamdenoise.processing.process_micrograph` (the daemon's read → bin → noise
estimate → normalise → tile → model → blend → statistics → write MRC / OME-Zarr /
thumbnail / sidecar / picks path) with the default model and the daemon's default settings
and outputs, on the daemon benchmark's cached 4096² Falcon-4i micrographs (0.93 Å/px,
binned to ~4 Å/px), one after another, each under `record_stages`. After each micrograph the
RELION micrographs STAR is rewritten with every micrograph done so far, as the daemon does
after each batch. One warm-up micrograph comes first and is not counted; the pool of
distinct inputs is cycled under new names (symbolic links) and read once beforehand, so the
inputs are in the page cache as when motion correction has just written them.

Prints, per stage: median and p90 ms per micrograph and the share of all measured time;
"other" is the wall time of process_micrograph not inside any stage. Then the cost of the
STAR rewrite at 100 and 1,000 rows, and a cProfile of one more micrograph: the top
functions of streamdenoise, numpy and torch by cumulative time (thin wrappers, whose time
is nearly all in one profiled callee, left out). Writes the "Daemon profile" section of
benchmarks/RESULTS.md unless --no-write or --quick. --quick: warm-up + 2 micrographs of the
"small" 1024² detector (1 Å/px, binned to 256²). --reference MAP: the statistics pick
their candidates with the reference (a map or model; "builtin" for the built-in one the
micrographs are simulated from) at its diameter, as `watch --reference` does; written to
the section "Daemon profile, with a reference".
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from results import cached_micrographs, markdown_table, write_section

from streamdenoise.engine.batches import (
    compile_by_default,
    default_batch_size,
    network_dtype,
    prepare_model,
)
from streamdenoise.engine.device import resolve_device
from streamdenoise.engine.profiling import record_stages, stage
from streamdenoise.io.relion import MicrographRow, OpticsSettings, write_micrographs_star
from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.model.pipeline import DenoiseSettings
from streamdenoise.outputs import DoneMicrograph, OutputLayout
from streamdenoise.physics.density import builtin_reference_path, load_reference
from streamdenoise.physics.session import SessionSpec
from streamdenoise.processing import OutputOptions, process_micrograph

STAR = "write micrographs STAR"
OTHER = "other (unaccounted)"
PIPELINE = [
    "read",
    "bin",
    "noise estimate",
    "normalise",
    "tile",
    "model",
    "blend",
    "guard",
    "statistics",
    "write MRC",
    "write OME-Zarr",
    "write thumbnail",
    "write sidecar",
    "write picks",
    STAR,
]
"""Stages in the order a micrograph meets them (unknown stages are listed after these)."""
STAR_ROWS = (100, 1000)
"""Session sizes (rows of the micrographs STAR) at which its rewrite is timed."""
TOP_FUNCTIONS = 12


def input_pool(count: int, quick: bool) -> list[Path]:
    """`count` distinct cached inputs: the daemon benchmark's 4096² Falcon-4i pool (same
    folder and seed, so the two share files), or 1024² "small" micrographs for --quick."""
    if quick:
        spec = SessionSpec(count=count, seed=77, detector="small")
        return cached_micrographs("profile-benchmark-small", spec, "small_", 2)
    spec = SessionSpec(count=count, seed=77, detector="falcon4i")
    return cached_micrographs("daemon-benchmark-pool", spec, "pool_", 2)


def warm_page_cache(paths: list[Path]) -> None:
    """Read every file once (16 MiB at a time) so the timed reads come from memory."""
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(16 << 20):
                pass


def milliseconds(seconds: float) -> str:
    """Seconds as a short millisecond figure: 0.04, 3.2, 412."""
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def stage_table(runs: list[dict[str, float]]) -> tuple[str, list[tuple[str, float]], float]:
    """Markdown table of per-micrograph stage times {stage: s} (OTHER included).

    Returns the table, [(stage, share of all measured time)] largest first, and the median
    total seconds per micrograph.
    """
    names = [name for name in PIPELINE if any(name in run for run in runs)]
    names += [*sorted({name for run in runs for name in run} - set(names) - {OTHER}), OTHER]
    totals = np.array([sum(run.values()) for run in runs])
    grand = float(totals.sum())
    rows, shares = [], []
    for name in names:
        values = np.array([run.get(name, 0.0) for run in runs])
        share = float(values.sum()) / grand
        shares.append((name, share))
        rows.append(
            [
                name,
                milliseconds(float(np.median(values))),
                f"{100 * share:.1f}",
                milliseconds(float(np.percentile(values, 90))),
            ]
        )
    median_total = float(np.median(totals))
    rows.append(
        [
            "**total**",
            milliseconds(median_total),
            "100.0",
            milliseconds(float(np.percentile(totals, 90))),
        ]
    )
    table = markdown_table(["stage", "median ms", "share %", "p90 ms"], rows)
    return table, sorted(shares, key=lambda item: -item[1]), median_total


def star_rewrite_seconds(path: Path, rows: list[MicrographRow], repeats: int = 5) -> float:
    """Median seconds of one `write_micrographs_star` of `rows` to `path`."""
    times = []
    for _ in range(repeats):
        with record_stages() as seconds, stage(STAR):
            write_micrographs_star(path, rows, OpticsSettings())
        times.append(seconds[STAR])
    return float(np.median(times))


def star_table(folder: Path, pixel_size: float, done_rows: list[MicrographRow]) -> str:
    """Markdown table of the STAR rewrite's cost at this run's and larger session sizes."""
    counts = sorted({len(done_rows), *STAR_ROWS})
    seconds = {}
    for count in counts:
        rows = done_rows[:count] + [
            MicrographRow(
                folder / "denoised" / f"FoilHole_{i:05d}_fractions.mrc",
                pixel_size,
                folder / f"FoilHole_{i:05d}_fractions.mrc",
            )
            for i in range(len(done_rows), count)
        ]
        seconds[count] = star_rewrite_seconds(folder / f"rows_{count}.star", rows)
    # t(n) ≈ a + b·n from the two largest sizes; rewriting after each of n micrographs
    # costs Σ t(k) = n·a + b·n(n+1)/2 over the session.
    low, high = STAR_ROWS
    slope = (seconds[high] - seconds[low]) / (high - low)
    base = seconds[low] - slope * low
    table = [
        [
            count,
            milliseconds(seconds[count]),
            f"{(count * base + slope * count * (count + 1) / 2):.1f}",
        ]
        for count in counts
    ]
    return markdown_table(
        ["rows (micrographs done)", "ms per rewrite", "s in all if rewritten after each"], table
    )


def function_label(function: tuple[str, int, str]) -> str:
    """'streamdenoise/model/unet.py:88 forward' or a built-in's name, from a pstats key."""
    filename, line, name = function
    if filename == "~":
        return name.replace("<built-in method ", "<").replace(" of type object", "")
    for marker in ("/site-packages/", "/lib/python"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    else:
        if "/streamdenoise/" in filename:
            filename = "streamdenoise/" + filename.rsplit("/streamdenoise/", 1)[1]
    return f"{Path(filename).as_posix()}:{line} {name}"


def in_scope(function: tuple[str, int, str]) -> bool:
    """Whether a pstats key is code of streamdenoise (stage timers and the top-level call
    aside), numpy or torch, or a built-in of numpy or torch."""
    filename, _, name = function
    if filename == "~":
        return any(library in name for library in ("numpy", "torch", "Tensor"))
    if "/streamdenoise/" in filename:
        return "engine/profiling.py" not in filename and name != "process_micrograph"
    return "/numpy/" in filename or "/torch/" in filename


def cprofile_table(stats: dict, total: float) -> str:
    """Markdown table of the top in-scope functions of a pstats `stats` dict by cumulative
    time, leaving out thin wrappers (≥ 95 % of their time in one in-scope callee)."""
    largest_callee: dict[tuple, float] = {}
    for function, (_, _, _, _, callers) in stats.items():
        if not in_scope(function):
            continue
        for caller, edge in callers.items():
            largest_callee[caller] = max(largest_callee.get(caller, 0.0), edge[3])
    entries = [
        (function, calls, own, cumulative)
        for function, (_, calls, own, cumulative, _) in stats.items()
        if in_scope(function) and largest_callee.get(function, 0.0) < 0.95 * cumulative
    ]
    entries.sort(key=lambda entry: -entry[3])
    rows = [
        [
            f"`{function_label(function)}`",
            calls,
            milliseconds(cumulative),
            f"{100 * cumulative / total:.1f}",
            milliseconds(own),
        ]
        for function, calls, own, cumulative in entries[:TOP_FUNCTIONS]
    ]
    return markdown_table(["function", "calls", "cumulative ms", "% of micrograph", "own ms"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micrographs", type=int, default=10, help="Counted, after warm-up.")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    parser.add_argument("--pool", type=int, default=6, help="Distinct inputs, cycled.")
    parser.add_argument("--float16", action="store_true", help="Write float16 MRC.")
    parser.add_argument("--out", type=Path, help="Output folder (default: a temporary one).")
    parser.add_argument("--quick", action="store_true", help="2 small micrographs; no write.")
    parser.add_argument("--no-write", action="store_true", help="Do not touch RESULTS.md.")
    parser.add_argument(
        "--reference",
        help="A map or model (or 'builtin'): the statistics pick with it, at its diameter.",
    )
    args = parser.parse_args()
    count = 2 if args.quick else args.micrographs
    if count < 1 or args.pool < 1:
        parser.error("--micrographs and --pool must be ≥ 1")
    pool = input_pool(min(args.pool, count + 2), args.quick)
    warm_page_cache(pool)
    device = resolve_device(args.device)
    model_path = default_model_path()
    loaded = load_model(model_path, device=device)
    compiled = compile_by_default(device, network_dtype(device))  # as the daemon does
    model = prepare_model(loaded.model, device, compile_model=compiled)
    settings = DenoiseSettings()
    options = OutputOptions(float16=args.float16, model_label=str(model_path))
    if args.reference:
        reference = (
            builtin_reference_path() if args.reference == "builtin" else Path(args.reference)
        )
        diameter = load_reference(reference).diameter
        options = replace(options, reference=reference, diameter_angstrom=diameter)
    root = Path(tempfile.mkdtemp(prefix="streamdenoise-profile-"))
    watch = root / "in"
    out = args.out or root / "out"
    watch.mkdir()
    layout = OutputLayout(watch, out)

    def source(index: int) -> Path:
        """Input number `index` under a new name: a link to a pool micrograph."""
        link = watch / f"FoilHole_{index:05d}_fractions.mrc"
        link.symlink_to(pool[index % len(pool)])
        return link

    def run(index: int) -> tuple[float, MicrographRow | None]:
        """Process input `index`; (wall seconds, its STAR row)."""
        path = source(index)
        start = time.perf_counter()
        results = process_micrograph(
            path, model, loaded.pixel_size, settings, layout, options, device=device
        )
        done = DoneMicrograph.from_journal(layout, path, results.outputs)
        row = None if done is None else MicrographRow(done.mrc, done.pixel_size, path)
        return time.perf_counter() - start, row

    star_rows: list[MicrographRow] = []
    runs: list[dict[str, float]] = []
    try:
        run(0)  # warm-up: first-call costs (allocator, lazy imports, caches)
        for index in range(1, count + 1):
            with record_stages() as seconds:
                wall, row = run(index)
                seconds[OTHER] = wall - sum(seconds.values())
                if row is not None:
                    star_rows.append(row)
                with stage(STAR):
                    write_micrographs_star(layout.star, star_rows, OpticsSettings())
            runs.append(dict(seconds))
            print(
                f"micrograph {index}/{count}: {milliseconds(sum(seconds.values()))} ms",
                flush=True,
            )
        profiler = cProfile.Profile()
        profiler.enable()
        profiled_seconds, _ = run(count + 1)
        profiler.disable()
        stats = pstats.Stats(profiler).stats
        pixel_size = star_rows[0].pixel_size if star_rows else loaded.pixel_size
        stars = star_table(root, pixel_size, star_rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    table, shares, median_total = stage_table(runs)
    share = dict(shares)
    detector = "small 1024² at 1.0 Å/px" if args.quick else "Falcon-4i 4096² at 0.93 Å/px"
    binned = f"{star_rows[0].pixel_size:.2f} Å/px" if star_rows else "the model's pixel size"
    batch = default_batch_size(device)
    top = [f"{name} ({100 * value:.0f} %)" for name, value in shares[:3]]
    model_share = share.get("model", 0.0)
    bound = (
        f"model compute ({100 * model_share:.0f} % of the time)"
        if model_share >= 0.5
        else f"the rest, not model compute (model {100 * model_share:.0f} %, "
        f"everything else {100 * (1 - model_share):.0f} %)"
    )
    summary = (
        f"Biggest stages: {', '.join(top)}; a micrograph ({milliseconds(median_total)} ms) "
        f"is bound by {bound}."
    )
    body = (
        f"`process_micrograph` (the daemon's per-micrograph path) on {count} simulated "
        f"{detector} float32 MRC micrographs ({len(pool)} distinct inputs for {count + 2} "
        "runs, cycled under new names; in the page cache), binned to "
        f"{binned}, default model in live mode on {device} ({batch} "
        f"tile(s) per network call, {'compiled' if compiled else 'eager'}, "
        f"{str(network_dtype(device)).removeprefix('torch.')}), daemon default "
        "outputs ("
        f"{'float16' if args.float16 else 'float32'} MRC, OME-Zarr, thumbnail, sidecar, "
        "statistics and picks"
        + (f", candidates from the reference {options.reference.name}" if args.reference else "")
        + "), after one warm-up micrograph; the micrographs STAR is "
        "rewritten with every micrograph done so far after each. Stages run one after "
        "another here; the daemon reads and bins on a 2-thread pool and writes there "
        "while the next batch is in the model, so on a GPU the I/O stages overlap with "
        "model compute, while on a small CPU they compete with it for the same cores. "
        "Share: of all measured time; other: wall time of `process_micrograph` outside "
        "every stage.\n\n" + table + "\n\n### The micrographs STAR rewrite against session size\n\n"
        "The daemon rewrites the whole file (atomically) after every batch; the last "
        "column extrapolates a linear fit of the rewrite time to a session that rewrites "
        "it after every micrograph.\n\n" + stars + "\n\n### cProfile of one micrograph\n\n"
        f"Under the profiler the micrograph took {milliseconds(profiled_seconds)} ms "
        f"(median {milliseconds(median_total)} ms without: the profiler's overhead falls "
        "on Python-heavy code). Functions of streamdenoise, numpy and torch by cumulative "
        "time; thin wrappers (≥ 95 % of their time in one listed callee) left out.\n\n"
        + cprofile_table(stats, profiled_seconds)
        + "\n\n"
        + summary
    )
    print()
    print(body)
    if not (args.quick or args.no_write):
        command = "python benchmarks/daemon_profile.py " + " ".join(sys.argv[1:])
        title = "Daemon profile" + (", with a reference" if args.reference else "")
        write_section(title, body, command.strip())


if __name__ == "__main__":
    main()
