"""Writing simulated sessions to disk like an acquisition: layout, truth, write modes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from streamdenoise.acquisition import write_session
from streamdenoise.io import read_star
from streamdenoise.physics.density import load_reference
from streamdenoise.physics.session import SessionSpec, micrograph_params

SMALL = dict(detector="small", binning=4, count=3, seed=11)


@pytest.fixture(scope="module")
def reference():
    return load_reference()


def test_session_layout_and_ground_truth(tmp_path: Path, reference) -> None:
    spec = SessionSpec(**SMALL)
    written = write_session(tmp_path, spec, reference)
    assert [p.name for p in written] == ["mic_0001.mrc", "mic_0002.mrc", "mic_0003.mrc"]
    assert not (tmp_path / ".staging").exists()
    for path in written:
        with mrcfile.open(path, permissive=False) as mrc:
            assert mrc.data.shape == (256, 256) and mrc.data.dtype == np.float32
            assert float(mrc.voxel_size.x) == pytest.approx(4.0)
        stem = path.stem
        truth = tmp_path / "ground_truth"
        record = json.loads((truth / f"{stem}.json").read_text())
        star = read_star(truth / f"{stem}_particles.star")
        rows = next(iter(star.values()))
        assert len(rows["_rlnCoordinateX"]) == record["particle_count"] > 0
        assert record["params"]["pixel_size"] == pytest.approx(4.0)
        with mrcfile.open(truth / f"{stem}_clean.mrc") as clean:
            assert clean.data.shape == (256, 256)
    session = json.loads((tmp_path / "session.json").read_text())
    assert session["spec"]["detector"] == "small"


def test_same_seed_same_session(tmp_path: Path, reference) -> None:
    spec = SessionSpec(**{**SMALL, "count": 1})
    a = write_session(tmp_path / "a", spec, reference)[0]
    b = write_session(tmp_path / "b", spec, reference)[0]
    with mrcfile.open(a) as first, mrcfile.open(b) as second:  # headers differ in the label time
        assert np.array_equal(first.data, second.data)
        assert first.voxel_size == second.voxel_size
    assert micrograph_params(spec, 0) == micrograph_params(spec, 0)
    assert micrograph_params(spec, 0) != micrograph_params(spec, 1)


def test_rate_and_write_modes(tmp_path: Path, reference) -> None:
    spec = SessionSpec(**SMALL)
    sleeps: list[float] = []
    now = [0.0]

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    written = write_session(
        tmp_path, spec, reference, rate=5.0, write_mode="mixed", clock=clock, sleep=sleep
    )
    assert len(written) == 3
    assert sleeps[:1] == [0.0] and 5.0 in sleeps  # micrograph i waits for t0 + i·rate
    assert not list((tmp_path / "micrographs").glob(".*"))  # no leftover temporaries
    with pytest.raises(ValueError, match="write mode"):
        write_session(tmp_path, spec, reference, rate=1.0, write_mode="sideways")


def test_chunked_writes_are_seen_growing(tmp_path: Path, reference) -> None:
    spec = SessionSpec(**{**SMALL, "count": 1})
    target = tmp_path / "micrographs" / "mic_0001.mrc"
    sizes: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if target.exists():
                sizes.add(target.stat().st_size)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        write_session(tmp_path, spec, reference, rate=1.0, write_mode="chunked")
    finally:
        done.set()
        watcher.join()
    final = target.stat().st_size
    assert final == 1024 + 256 * 256 * 4
    assert any(0 < size < final for size in sizes)  # a partial file was visible
