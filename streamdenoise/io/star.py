"""Minimal RELION STAR files: data blocks holding one loop each (coordinates, micrograph
lists). Enough for our own files and the usual RELION coordinate/micrograph files."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from streamdenoise.errors import FileProblem
from streamdenoise.io.atomic import atomic_write_text

Table = Mapping[str, Sequence[object]]


def _format_value(value: object) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6f}"
    text = str(value)
    return f'"{text}"' if (not text or any(c.isspace() for c in text)) else text


def format_star(blocks: Mapping[str, Table]) -> str:
    """STAR text of `blocks`: {block name: {column label (e.g. "_rlnCoordinateX"): values}}.

    Every column of a block must have the same length; labels get their "#n" index.
    """
    lines = ["# written by streamdenoise", ""]
    for name, table in blocks.items():
        columns = list(table)
        lengths = {len(table[c]) for c in columns}
        if len(lengths) > 1:
            raise ValueError(f"columns of block {name!r} differ in length: {sorted(lengths)}")
        lines += [f"data_{name}", "", "loop_"]
        lines += [
            f"{label if label.startswith('_') else '_' + label} #{i + 1}"
            for i, label in enumerate(columns)
        ]
        rows = zip(*(table[c] for c in columns), strict=True)
        lines += [" ".join(_format_value(v) for v in row) for row in rows]
        lines.append("")
    return "\n".join(lines) + "\n"


def write_star_atomic(path: str | Path, blocks: Mapping[str, Table]) -> None:
    """Write `blocks` as a STAR file atomically (readers never see half a file)."""
    atomic_write_text(path, format_star(blocks))


def read_star(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """Parse the loops of a STAR file: {block name: {label: values as strings}}.

    Raises FileProblem naming the file for a missing file or a malformed loop.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise FileProblem(path, f"cannot read STAR file: {error}") from error
    blocks: dict[str, dict[str, list[str]]] = {}
    block: dict[str, list[str]] | None = None
    labels: list[str] = []
    in_loop = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            if in_loop and labels and not line:
                in_loop = False
            continue
        if line.startswith("data_"):
            block = blocks.setdefault(line[5:], {})
            in_loop, labels = False, []
        elif line == "loop_":
            if block is None:
                raise FileProblem(path, f"line {number}: loop_ outside a data_ block")
            in_loop, labels = True, []
        elif line.startswith("_"):
            if block is None:
                raise FileProblem(path, f"line {number}: label outside a data_ block")
            label = line.split()[0]
            if in_loop:
                labels.append(label)
                block[label] = []
            else:  # a key-value pair outside a loop
                parts = line.split(maxsplit=1)
                block[label] = [parts[1] if len(parts) > 1 else ""]
        elif in_loop and block is not None:
            values = shlex.split(line)
            if len(values) != len(labels):
                raise FileProblem(
                    path, f"line {number}: {len(values)} values for {len(labels)} columns"
                )
            for label, value in zip(labels, values, strict=True):
                block[label].append(value)
        else:
            raise FileProblem(path, f"line {number}: unexpected {line[:40]!r}")
    return blocks
