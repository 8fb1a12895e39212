"""Strict JSON text for every file the package writes: no NaN or Infinity (JSON has no such
values; browsers' JSON.parse and many tools refuse them). Pure."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (recursively through dicts,
    lists and tuples; numpy scalars become Python numbers, tuples lists)."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any, indent: int | None = 2) -> str:
    """Strict JSON of `value` (see `finite`), ending with a newline."""
    return json.dumps(finite(value), indent=indent, allow_nan=False) + "\n"
