"""The readers that users' tools use, as test helpers: mrcfile's validator, strict JSON,
starfile and gemmi's CIF parser for STAR files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import gemmi
import mrcfile
import pandas as pd
import starfile


def assert_valid_mrc(path: Path) -> None:
    """mrcfile.validate passes (its report in the failure message), and the header names
    what made the file."""
    report = io.StringIO()
    assert mrcfile.validate(str(path), print_file=report), report.getvalue()
    with mrcfile.open(path, permissive=False) as mrc:
        labels = [label for label in mrc.get_labels() if label.startswith("streamdenoise")]
    assert labels, f"{path}: no streamdenoise label in the header"


def _refuse(constant: str) -> None:
    raise ValueError(f"invalid JSON constant {constant}")


def strict_json(path: Path) -> object:
    """The JSON of `path`, refusing NaN and ±Infinity (as JSON.parse does)."""
    return json.loads(Path(path).read_text(), parse_constant=_refuse)


def star_tables(path: Path) -> dict[str, pd.DataFrame]:
    """Every block of a STAR file read by `starfile` (as dataframes) after checking that
    gemmi's CIF parser reads it too and finds the same blocks."""
    document = gemmi.cif.read(str(path))
    tables = starfile.read(path, always_dict=True)
    assert [block.name.strip() for block in document] == list(tables), path
    return tables
