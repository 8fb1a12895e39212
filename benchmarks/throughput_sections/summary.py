"""6. Summary lines against the targets and the figures to compare runs with."""

from __future__ import annotations

import math

from .common import (
    TARGET_MATMUL_SHARE,
    TARGET_ONESHOT_RATIO,
    TARGET_PER_HOUR,
    TARGET_TOPAZ_RATIO,
    TOPAZ_FILES,
    load_average,
    shape_text,
)
from .state import State


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
    if math.isfinite(state.topaz_files_s) and math.isfinite(state.ours_cli_s):
        ratio = state.topaz_files_s / state.ours_cli_s
        met = "met" if ratio >= TARGET_ONESHOT_RATIO else "NOT met"
        lines.append(
            f"- one-shot commands on {TOPAZ_FILES} binned files, start-up included: Topaz-Denoise "
            f"{state.topaz_files_s:.1f} s, streamdenoise denoise {state.ours_cli_s:.1f} s: "
            f"{ratio:.1f}× (target ≥ {TARGET_ONESHOT_RATIO:.0f}×: {met})"
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
