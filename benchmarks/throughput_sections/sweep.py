"""3b. The sweep on the reference input: batch size, eager vs compiled, precision, tile."""

from __future__ import annotations

from dataclasses import replace

import torch

from streamdenoise.engine.batches import native_bfloat16

from .bench import Config, Measurement
from .common import fmt, progress
from .state import State


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """Whether this device runs the model in bfloat16 natively, and why not."""
    if native_bfloat16(device):
        return True, ""
    if device.type == "cuda":
        return False, f"{torch.cuda.get_device_name(device)} has no native bfloat16"
    return False, (
        "this CPU has no native bfloat16 (oneDNN reports no AVX512-BF16/AMX; it would be "
        "emulated, slower than float32), so the default precision here is float32"
    )


def sweep_plan(state: State) -> list[tuple[str, Config]]:
    """(varied factor, configuration) of the sweep, each factor changed alone."""
    default = state.bench.default_config()
    batches = [b for b in (2**i for i in range(8)) if b <= max(1, state.args.max_batch)]
    batches = batches[:2] if state.quick else batches
    tiles = [128, 256] if state.quick else [256, 384, 512, 1024]
    plan = [("batch", replace(default, batch=b)) for b in batches]
    plan.append(("compiled", replace(default, compiled=not default.compiled)))
    if bf16_support(state.device)[0]:
        plan += [("precision", replace(default, dtype=d)) for d in (torch.float32, torch.bfloat16)]
    return plan + [("max tile", replace(default, tile=t)) for t in tiles]


def best_together(default: Config, measured: dict[Config, Measurement]) -> Config:
    """Each factor at the setting that was fastest when that factor alone was changed from
    `default` (so a factor is not credited with the gain of another)."""
    combined = default
    for name in ("batch", "compiled", "dtype", "tile"):
        alone = {
            config: result
            for config, result in measured.items()
            if all(
                getattr(config, other) == getattr(default, other)
                for other in ("batch", "compiled", "dtype", "tile", "full_resolution")
                if other != name
            )
        }
        fastest = min(alone, key=lambda config: alone[config].median)
        combined = replace(combined, **{name: getattr(fastest, name)})
    return combined


def section_sweep(state: State) -> None:
    """3b. Batch size, eager vs compiled, precision and tile side on the reference input."""
    state.report.heading(f"3b. Sweep on the binned {state.reference} micrographs")
    default = state.bench.default_config()
    if not state.reference_images or (state.reference, False) not in state.rows:
        return
    state.sweep[default] = ("default", state.rows[(state.reference, False)].measurement)
    for varied, config in sweep_plan(state):
        if config not in state.sweep:
            progress(f"sweep: {config.describe()}")
            result = state.bench.measure(state.reference_images, config, state.repeats)
            state.sweep[config] = (varied, result)
    valid = {c: m for c, (_, m) in state.sweep.items() if not m.error}
    if default in valid and (combined := best_together(default, valid)) not in state.sweep:
        progress(f"sweep: the best of each factor together: {combined.describe()}")
        result = state.bench.measure(state.reference_images, combined, state.repeats)
        state.sweep[combined] = ("best together", result)
        if not result.error:
            valid[combined] = result
    state.fastest = min(valid, key=lambda c: valid[c].median) if valid else None
    rows: list[list[object]] = []
    for config, (varied, result) in state.sweep.items():
        note = result.error or ("◀ fastest" if config == state.fastest else "")
        rows.append(
            [
                varied,
                config.batch,
                "yes" if config.compiled else "no",
                config.precision,
                config.tile,
                result.tile or "–",
                f"{result.computed_tiles:g} / {result.real_tiles:g}" if result.tile else "–",
                fmt(result.warmup),
                fmt(result.median),
                fmt(result.best),
                fmt(3600 / result.median, 0),
                fmt(result.model_gflops, 1),
                fmt(100 * result.model_gflops / state.rate(config), 0),
                note,
            ]
        )
    supported, why_not = bf16_support(state.device)
    if not supported:
        rows.append(["precision", default.batch, "no", "bfloat16", *["–"] * 9, "unsupported"])
    header = ["varied", "batch", "compiled", "precision", "max tile", "tile"]
    header += ["tiles computed / real", "warm-up s", "s / micrograph", "best s"]
    header += ["micrographs / h (no read)", "model GFLOP/s", "% of matmul", "note"]
    state.report.table(header, rows)
    state.report.line(
        "Each factor varied alone from the default, then the best of each together. warm-up "
        "s: the first network call (for a compiled model, the compilation). tiles computed / "
        "real: per micrograph, with the padding of the last batch."
    )
    if not supported:
        state.report.line(f"bfloat16 is not supported natively here: {why_not}.")
