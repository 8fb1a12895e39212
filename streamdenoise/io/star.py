"""Minimal RELION STAR files: `data_` blocks holding loops or label-value pairs.

Enough for our own files and the usual RELION coordinate and micrograph files; STAR
features RELION does not write (multi-line `;` text fields, save frames) are not read.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from streamdenoise.errors import FileProblem
from streamdenoise.io.atomic import atomic_write_text

Table = Mapping[str, Sequence[object]]
"""One block: column label (e.g. "_rlnCoordinateX") → that column's values."""
_TOKEN = re.compile(r"""'(.*?)'(?=\s|$)|"(.*?)"(?=\s|$)|(\S+)""")
_RESERVED = ("data_", "loop_", "save_", "global_", "stop_")
STAR_VERSION = "# version 30001"
"""The line RELION 3.1, 4 and 5 write before each block of their STAR files."""


def _format_value(value: object) -> str:
    """One STAR token: ints as ints, reals with 6 decimals (exponent when tiny or huge),
    strings as-is, quoted where they hold spaces or would read as syntax."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number) or number == 0 or 1e-3 <= abs(number) < 1e9:
            return f"{number:.6f}"
        return f"{number:.6e}"
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"STAR values cannot span lines: {text!r}")
    plain = text and text[0] not in "_#'\"" and not text.lower().startswith(_RESERVED)
    if plain and not any(c.isspace() for c in text):
        return text
    quote = "'" if '"' in text else '"'
    return f"{quote}{text}{quote}"


def format_star(blocks: Mapping[str, Table]) -> str:
    """STAR text of `blocks`: {block name: {column label: values}}, one loop per block.

    Each block is preceded by RELION 3.1+'s `# version 30001` line. Labels get a leading
    "_" if missing and their "#n" index. Raises ValueError when the columns of a block
    differ in length.
    """
    lines = ["# written by streamdenoise", ""]
    for name, table in blocks.items():
        lengths = sorted({len(column) for column in table.values()})
        if len(lengths) > 1:
            raise ValueError(f"columns of block {name!r} differ in length: {lengths}")
        lines += [STAR_VERSION, "", f"data_{name}", "", "loop_"]
        lines += [
            f"{label if label.startswith('_') else '_' + label} #{index}"
            for index, label in enumerate(table, start=1)
        ]
        rows = zip(*table.values(), strict=True)
        lines += [" ".join(_format_value(value) for value in row) for row in rows]
        lines.append("")
    return "\n".join(lines) + "\n"


def write_star_atomic(path: str | Path, blocks: Mapping[str, Table]) -> None:
    """Write `blocks` (see `format_star`) as a STAR file atomically."""
    atomic_write_text(path, format_star(blocks))


def _tokens(line: str) -> list[str]:
    """The tokens of one line, quotes removed, up to an unquoted "#" comment."""
    tokens = []
    for match in _TOKEN.finditer(line):
        single, double, bare = match.groups()
        if bare is not None and bare.startswith("#"):
            break
        tokens.append(next(t for t in (single, double, bare) if t is not None))
    return tokens


def read_star(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """Parse a STAR file: {block name: {label: values as strings}}.

    A loop gives each label its column; a label-value pair outside a loop gives a
    one-element list. Raises FileProblem naming the file (and line) for a missing,
    unreadable or malformed file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise FileProblem(path, "no such file") from error
    except PermissionError as error:
        raise FileProblem(path, "cannot read: permission denied") from error
    except OSError as error:
        raise FileProblem(path, f"cannot read: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise FileProblem(path, "not a STAR file (not UTF-8 text)") from error
    blocks: dict[str, dict[str, list[str]]] = {}
    block: dict[str, list[str]] | None = None
    labels: list[str] = []
    in_header = False  # between "loop_" and the loop's first row
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = _tokens(line)
        if not tokens:
            continue
        quoted = line.lstrip()[0] in "'\""  # a quoted value is never a keyword or label
        head = "" if quoted else tokens[0]
        if head.startswith("data_"):
            block, labels, in_header = blocks.setdefault(head[5:], {}), [], False
            continue
        if block is None:
            raise FileProblem(path, f"line {number}: {line.strip()[:40]!r} before any data_ block")
        if head == "loop_":
            labels, in_header = [], True
        elif head.startswith("_") and in_header:
            if len(tokens) != 1:
                raise FileProblem(path, f"line {number}: a loop label with a value")
            labels.append(head)
            block[head] = []
        elif head.startswith("_"):
            if len(tokens) != 2:
                raise FileProblem(path, f"line {number}: label {head} needs exactly one value")
            block[head], labels = [tokens[1]], []
        elif labels:
            in_header = False
            if len(tokens) != len(labels):
                raise FileProblem(
                    path, f"line {number}: {len(tokens)} values for {len(labels)} columns"
                )
            for label, value in zip(labels, tokens, strict=True):
                block[label].append(value)
        else:
            raise FileProblem(path, f"line {number}: unexpected {line.strip()[:40]!r}")
    return blocks
