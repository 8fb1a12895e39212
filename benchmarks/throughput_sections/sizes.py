"""3. Throughput of the default configuration on each input size, binned and at full
resolution."""

from __future__ import annotations

import statistics

from .bench import micrographs, read_cold
from .common import STAGES, fmt, progress, shape_text
from .limits import io_floor
from .state import Row, State


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
