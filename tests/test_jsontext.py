"""Every JSON file the package writes is strict JSON: no NaN or Infinity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamdenoise.io.jsontext import finite, json_text
from streamdenoise.snapshot import MicrographSummary, Snapshot


def _strict(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_become_null() -> None:
    value = {"a": float("nan"), "b": [1.0, float("inf"), (np.float32(2.5), np.int64(3))]}
    assert finite(value) == {"a": None, "b": [1.0, None, [2.5, 3]]}
    assert _strict(json_text(value)) == {"a": None, "b": [1.0, None, [2.5, 3]]}


def test_a_status_with_an_unmeasurable_contrast_is_valid_json() -> None:
    snapshot = Snapshot(
        version="0", state="watching", watch_dir="/in", out_dir="/out", device="cpu",
        started=0.0, updated=1.0,
        recent=(MicrographSummary("m.mrc", "done", cnr=float("nan")),),
        session={"cnr": {"median": float("nan")}},
    )  # fmt: skip
    with pytest.raises(ValueError):
        _strict(json.dumps(snapshot.to_json()))  # what a bare json.dumps would write
    parsed = _strict(json_text(snapshot.to_json()))
    assert parsed["recent"][0]["cnr"] is None and parsed["session"]["cnr"]["median"] is None
    assert Snapshot.from_json(parsed).recent[0].cnr is None
