"""4. Topaz-Denoise side by side on the same binned micrographs, with the quality figures."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from results import RESULTS

from streamdenoise.io import write_mrc_atomic
from streamdenoise.model.pipeline import prepare

from .common import TOPAZ_FILES, Image, fmt, progress, shape_text
from .state import State


def write_inputs(folder: Path, images: list[Image], count: int) -> list[Path]:
    """`count` MRC files in `folder`, cycling through `images` (array, Å/px)."""
    folder.mkdir()
    paths = []
    for index in range(count):
        data, pixel = images[index % len(images)]
        paths.append(folder / f"m{index:03d}.mrc")
        write_mrc_atomic(paths[-1], data, pixel)
    return paths


def timed(command: list[str]) -> float:
    """Wall seconds of one run of `command` (which must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def topaz_seconds(python: str, paths: list[Path], out: Path, gpu: bool) -> tuple[float, float, str]:
    """Topaz-Denoise's CLI (pretrained unet), one process over the first file and one over
    all of `paths`, on GPU 0 when `gpu` (falling back to the CPU if its torch has no CUDA),
    else the CPU. Returns (t_1 s, t_N s, the device it ran on)."""

    def run(files: list[Path], name: str, device: str) -> float:
        command = [python, "-m", "topaz.commands.denoise", "-d", device, "-m", "unet"]
        return timed([*command, "-o", str(out / name), *map(str, files)])

    device = "0" if gpu else "-1"
    try:
        one = run(paths[:1], "topaz1", device)
    except subprocess.CalledProcessError:
        if not gpu:
            raise
        device = "-1"
        one = run(paths[:1], "topaz1", device)
    return one, run(paths, "topazN", device), "GPU 0" if device == "0" else "CPU"


def streamdenoise_cli_seconds(paths: list[Path], out: Path, device: torch.device) -> float:
    """Wall seconds of one `streamdenoise denoise` process over `paths` (start-up, model
    load and writing the denoised MRC files included), as a user runs it."""
    executable = str(Path(sys.executable).with_name("streamdenoise"))
    return timed(
        [executable, "denoise", *map(str, paths), "--out", str(out), "--device", str(device)]
    )


def quality_figures(path: Path = RESULTS) -> list[tuple[str, dict[str, dict[str, str]]]]:
    """PSNR dB and AP per method and dose from the "## Quality" section of RESULTS.md:
    [(dose heading, {method: {"PSNR dB": …, "AP": …}})]; empty when there is none."""
    if not path.exists():
        return []
    found = re.search(r"^## Quality\n(.*?)(?=^## |\Z)", path.read_text(), re.S | re.M)
    if not found:
        return []
    figures = []
    for block in re.split(r"^### ", found.group(1), flags=re.M)[1:]:
        heading, _, body = block.partition("\n")
        rows = [
            [cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in body.splitlines()
            if line.strip().startswith("|")
        ]
        if len(rows) < 3:
            continue
        header = rows[0]
        methods = {}
        for row in rows[2:]:
            values = dict(zip(header, row, strict=False))
            methods[row[0]] = {name: values.get(name, "?") for name in ("PSNR dB", "AP")}
        figures.append((heading.split(",")[0].strip(), methods))
    return figures


def section_topaz(state: State) -> None:
    """4. Topaz-Denoise's CLI on the same binned micrographs, with the quality figures."""
    python = state.args.topaz_python
    row = state.rows.get((state.reference, False))
    if not python or not state.reference_images or row is None:
        return
    state.report.heading(f"4. Side by side with Topaz-Denoise ({state.reference}, binned)")
    bench, default = state.bench, state.bench.default_config()
    binned: list[Image] = []
    for data, pixel in state.reference_images:
        prepared = prepare(data, pixel, bench.model_pixel, default.settings())
        binned.append((prepared.image, prepared.pixel_size))
    progress("ours on the binned arrays")
    only = bench.measure(binned, bench.default_config(full_resolution=True), state.repeats)
    state.ours_denoise_only_s = only.median
    files = max(TOPAZ_FILES, state.count)
    progress(f"Topaz-Denoise CLI over 1 and {files} files, streamdenoise denoise over {files}")
    ours_cli = float("nan")
    with tempfile.TemporaryDirectory(prefix="throughput-topaz-") as folder:
        root = Path(folder)
        paths = write_inputs(root / "in", binned, files)
        try:
            one, many, where = topaz_seconds(python, paths, root, state.cuda)
            state.topaz_s = (many - one) / (files - 1)
            state.topaz_files_s = many
            note = f"on the {where}: t₁ {one:.1f} s, t₍{files}₎ {many:.1f} s, (t_N − t₁)/(N − 1)"
        except (subprocess.CalledProcessError, OSError) as error:
            stderr = getattr(error, "stderr", b"") or b""
            note = f"failed: {error} {stderr.decode(errors='replace')[-300:]}"
        ours_cli = streamdenoise_cli_seconds(paths, root / "ours", state.device)
    state.ours_cli_s = ours_cli
    shape = shape_text(binned[0][0].shape)
    raw_shape = shape_text(state.reference_images[0][0].shape)
    state.report.table(
        ["method", "input", "s / micrograph", "Topaz ÷ this", "note"],
        [
            ["Topaz-Denoise unet (CLI)", shape, fmt(state.topaz_s), "1.0×", note],
            [
                "streamdenoise, denoise only",
                shape,
                fmt(only.median),
                f"{fmt(state.topaz_s / only.median, 1)}×",
                f"noise estimate … blend on the binned array; {default.describe()}",
            ],
            [
                "streamdenoise, end to end from the file",
                f"{raw_shape} → {shape}",
                fmt(row.with_read),
                f"{fmt(state.topaz_s / row.with_read, 1)}×",
                "read + bin + denoise",
            ],
        ],
    )
    state.report.table(
        ["command", f"{files} files, s in all", "Topaz ÷ this"],
        [
            ["Topaz-Denoise unet (CLI)", fmt(state.topaz_files_s), "1.0×"],
            [
                "streamdenoise denoise",
                fmt(ours_cli),
                f"{fmt(state.topaz_files_s / ours_cli, 1)}×",
            ],
        ],
        title=f"One-shot commands on the same {files} binned files ({shape}), start-up, model "
        "load and writing included (one process each, as a user runs them)",
    )
    state.quality = [] if state.args.model else quality_figures()
    rows = [
        [dose, method, methods[method]["PSNR dB"], methods[method]["AP"]]
        for dose, methods in state.quality
        for method in ("Topaz-Denoise unet", "live (default model)")
        if method in methods
    ]
    if rows:
        title = "Quality beside the speed (the Quality section of RESULTS.md)"
        state.report.table(["dose", "method", "PSNR dB", "AP"], rows, title=title)
    elif state.args.model:
        state.report.line(
            'The Quality section is of the shipped model: see "Model choice" for this one.'
        )
    else:
        state.report.line("No Quality figures in RESULTS.md: run benchmarks/quality.py.")
