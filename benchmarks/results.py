"""Shared by the benchmarks: describe the machine and (re)write a section of RESULTS.md."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """One line: CPU model, cores, memory, Python, torch and device."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        torch_version = f", torch {torch.__version__}"
    except ImportError:
        device, torch_version = "no GPU", ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu}, {cores} cores{memory}, {device}, Python {platform.python_version()}{torch_version}"
    )


def write_section(title: str, body: str, command: str | None = None) -> None:
    """Replace (or append) the section `## title` of RESULTS.md with `body`.

    The section records the command that produced it, the machine and the date.
    """
    command = command or "python " + shlex.join(sys.argv)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"## {title}\n\n"
        f"- command: `{command}`\n- machine: {machine()}\n- date: {stamp}\n\n{body.strip()}\n"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def cached_micrographs(folder_name: str, spec, prefix: str, digits: int) -> list[Path]:
    """`spec.count` distinct simulated micrographs (noisy MRC) of a `SessionSpec`, made once
    and kept under the cache directory in `folder_name`, named `<prefix><index>.mrc`."""
    from streamdenoise.io import write_mrc_atomic
    from streamdenoise.model.guidance import cache_directory
    from streamdenoise.physics.density import load_reference
    from streamdenoise.physics.session import micrograph_params
    from streamdenoise.physics.simulator import simulate_micrograph

    folder = cache_directory() / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    reference = None
    paths = []
    for index in range(spec.count):
        path = folder / f"{prefix}{index:0{digits}d}.mrc"
        if not path.exists():
            reference = reference or load_reference()
            params = micrograph_params(spec, index)
            write_mrc_atomic(path, simulate_micrograph(reference, params).noisy, params.pixel_size)
            print(f"simulated {path.name}", flush=True)
        paths.append(path)
    return paths
