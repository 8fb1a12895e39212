"""`streamdenoise batch` on a real Dask LocalCluster of worker processes (2 × 1 thread), with
the shipped model on tiny simulated micrographs (256² at 4 Å/px)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import zarr

distributed = pytest.importorskip("distributed")

from streamdenoise.acquisition import write_session  # noqa: E402
from streamdenoise.distributed import BatchConfig, TaskResult, find_inputs, run_batch  # noqa: E402
from streamdenoise.io import read_star  # noqa: E402
from streamdenoise.model.modelfile import default_model_path  # noqa: E402
from streamdenoise.model.pipeline import DenoiseSettings  # noqa: E402
from streamdenoise.outputs import OutputLayout  # noqa: E402
from streamdenoise.physics.density import load_reference  # noqa: E402
from streamdenoise.physics.session import SessionSpec  # noqa: E402
from streamdenoise.processing import (  # noqa: E402
    OutputOptions,
    process_micrograph,
    processing_params_hash,
)
from streamdenoise.runtime import load_runtime  # noqa: E402

EXECUTABLE = str(Path(sys.executable).with_name("streamdenoise"))
COUNT = 8


@pytest.fixture(scope="module")
def micrographs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    session = tmp_path_factory.mktemp("session")
    spec = SessionSpec(count=COUNT, seed=5, detector="small", binning=4)
    return write_session(session, spec, load_reference())


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def dataset(micrographs: list[Path], folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    return [Path(shutil.copy2(path, folder / path.name)) for path in micrographs[:count]]


def journal_rows(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "journal.sqlite") as db:
        return db.execute("SELECT * FROM files ORDER BY path").fetchall()


def star_names(out: Path) -> list[str]:
    return read_star(out / "micrographs_denoised.star")["micrographs"]["_rlnMicrographName"]


def batch(inputs: list[Path], out: Path, client, **kwargs):
    files, root = find_inputs(inputs)
    return run_batch(files, BatchConfig(out_dir=out, root=root, device="cpu"), client, **kwargs)


def test_batch_matches_in_process_outputs_and_rerun_does_nothing(
    micrographs: list[Path], client, tmp_path: Path
) -> None:
    inputs = dataset(micrographs, tmp_path / "in" / "grid1", 3)
    out = tmp_path / "out"
    result = batch([tmp_path / "in"], out, client)
    assert (result.done, result.skipped, result.quarantined) == (3, 0, {})
    # The network as a worker holds it (channels_last: in bfloat16 its kernels round
    # differently from the plain layout's, by up to 7e-4 of the output on an AVX512-BF16 CPU).
    runtime = load_runtime(None, "cpu", compile_model=False)
    reference = OutputLayout(tmp_path / "in", tmp_path / "reference")
    for source in inputs:
        expected = process_micrograph(
            source,
            runtime.network,
            runtime.loaded.pixel_size,
            DenoiseSettings(),
            reference,
            OutputOptions(),
        ).outputs
        denoised = out / "denoised" / "grid1" / source.name  # mirrors the input tree
        with (
            mrcfile.open(denoised) as got,
            mrcfile.open(reference.resolve(expected["mrc"])) as want,
        ):
            assert got.data.shape == (256, 256)
            assert np.allclose(got.data, want.data, atol=1e-5)
        group = zarr.open_group(out / "denoised.zarr" / f"grid1__{source.stem}", mode="r")
        assert group["0"].shape == (256, 256)
    names = star_names(out)
    assert sorted(names) == sorted(str(out / "denoised" / "grid1" / p.name) for p in inputs)
    daemon_hash = processing_params_hash(
        default_model_path(), DenoiseSettings(), OutputOptions(), input_pixel_size=None, suffix=""
    )
    before = journal_rows(out)
    assert {row[3] for row in before} == {daemon_hash}  # the daemon skips these, and back

    again = batch([tmp_path / "in"], out, client)
    assert (again.done, again.skipped, again.quarantined) == (0, 3, {})
    assert journal_rows(out) == before


def test_bad_file_is_quarantined_and_the_rest_finish(
    micrographs: list[Path], client, tmp_path: Path
) -> None:
    dataset(micrographs, tmp_path / "in", 2)
    bad = tmp_path / "in" / "text.mrc"
    bad.write_text("not a micrograph at all, just words\n" * 50)
    out = tmp_path / "out"
    result = batch([tmp_path / "in"], out, client)
    assert result.done == 2 and list(result.quarantined) == [bad]
    states = {
        Path(path).name: (state, error) for path, _, _, _, state, _, error, *_ in journal_rows(out)
    }
    assert states["text.mrc"][0] == "quarantined" and "not an MRC" in states["text.mrc"][1]
    assert [states[p.name][0] for p in micrographs[:2]] == ["done", "done"]
    assert len(star_names(out)) == 2


def test_killed_worker_loses_nothing(micrographs: list[Path], client, tmp_path: Path) -> None:
    dataset(micrographs, tmp_path / "in", COUNT)
    out = tmp_path / "out"
    seen: list[TaskResult] = []
    killed: list[int] = []

    def kill_another_worker(outcome: TaskResult) -> None:
        if not seen:  # the first result: the other worker is mid-task
            pids = client.run(os.getpid)
            killed.append(next(pid for addr, pid in pids.items() if addr != outcome.worker))
            os.kill(killed[0], signal.SIGKILL)
        seen.append(outcome)

    result = batch([tmp_path / "in"], out, client, on_result=kill_another_worker)
    assert (result.done, result.quarantined) == (COUNT, {})
    assert len({outcome.path for outcome in seen}) == len(seen) == COUNT
    rows = journal_rows(out)
    assert len(rows) == COUNT and {row[4] for row in rows} == {"done"}
    names = star_names(out)
    assert len(names) == len(set(names)) == COUNT
    assert len(killed) == 1


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EXECUTABLE, "batch", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def test_cli_batch_end_to_end(micrographs: list[Path], tmp_path: Path) -> None:
    inputs = dataset(micrographs, tmp_path / "in", 3)
    out = tmp_path / "out"
    usage = cli(str(tmp_path / "in"), "--out", str(out), "--scheduler", "x", "--workers", "2")
    assert usage.returncode == 2 and "not both" in usage.stderr
    run = cli(str(tmp_path / "in"), "--out", str(out), "--workers", "2", "--device", "cpu")
    assert run.returncode == 0, run.stderr
    assert "Done: 3 denoised" in run.stderr and "Dask dashboard" in run.stderr
    assert sorted(star_names(out)) == sorted(str(out / "denoised" / p.name) for p in inputs)
    assert {row[4] for row in journal_rows(out)} == {"done"}


def test_cli_batch_exits_1_when_an_input_failed(micrographs: list[Path], tmp_path: Path) -> None:
    dataset(micrographs, tmp_path / "in", 1)
    (tmp_path / "in" / "text.mrc").write_text("not a micrograph\n" * 100)
    run = cli(str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "1")
    assert run.returncode == 1, run.stderr
    assert "quarantined" in run.stderr and "Done: 1 denoised" in run.stderr


def test_batch_reads_the_daemons_tables_and_writes_the_optics_and_coordinate_lists(
    micrographs: list[Path], client, tmp_path: Path
) -> None:
    """The settings file of `watch` drives `batch` too: [denoise], [outputs], [readiness]
    (its [watch] table, the daemon's own, is validated and not used)."""
    from readers import star_tables

    from streamdenoise.config import load_settings

    inputs = dataset(micrographs, tmp_path / "project" / "Movies", 2)
    out = tmp_path / "project" / "External" / "job003"
    path = tmp_path / "session.toml"
    path.write_text(
        f'version = 1\n[watch]\nwatch_dir = "{tmp_path}/elsewhere"\nsettle_seconds = 9\n'
        '[denoise]\ndevice = "cpu"\nguard = false\n'
        f'[outputs]\nout_dir = "{out}"\nzarr = false\npicks_frame = "both"\n'
        f"voltage_kv = 200\ncs_mm = 1.4\namplitude_contrast = 0.07\n"
        f'relion_project = "{tmp_path / "project"}"\n'
        "[readiness]\nparticle_diameter = 120.0\n[readiness.thresholds]\nmin_cnr = 2.0\n"
    )
    files, root = find_inputs([tmp_path / "project" / "Movies"])
    config = BatchConfig.from_settings(load_settings(path, {}), root)
    assert (config.out_dir, config.device, config.zarr) == (out, "cpu", False)
    assert config.settings.guard is False and config.diameter_angstrom == 120.0
    assert config.thresholds.min_cnr == 2.0
    assert run_batch(files, config, client).done == 2
    assert not (out / "denoised.zarr").exists()
    tables = star_tables(out / "micrographs_denoised.star")
    assert tables["optics"].loc[0, ["rlnVoltage", "rlnAmplitudeContrast"]].tolist() == [200, 0.07]
    assert sorted(tables["micrographs"]["rlnMicrographName"]) == [
        f"External/job003/denoised/{p.name}" for p in inputs
    ]
    listed = star_tables(out / "coordinates.star")["coordinate_files"]
    assert sorted(listed["rlnMicrographName"]) == [f"Movies/{p.name}" for p in inputs]
    assert sorted(listed["rlnMicrographCoordinates"]) == [
        f"External/job003/picks/{p.stem}.star" for p in inputs
    ]
    denoised = star_tables(out / "coordinates_denoised.star")["coordinate_files"]
    assert sorted(denoised["rlnMicrographName"]) == sorted(
        tables["micrographs"]["rlnMicrographName"]
    )


def test_local_workers_are_one_per_gpu_on_a_gpu_host_not_one_per_core() -> None:
    from streamdenoise.distributed import local_workers, worker_device

    gpu_host, cpu_host = {"cpus": 16, "gpus": 2}, {"cpus": 16, "gpus": 0}
    assert local_workers("auto", None, 1, **gpu_host) == (2, True)
    assert local_workers("cuda", None, 1, **gpu_host) == (2, True)
    assert local_workers("cuda:1", None, 1, **gpu_host) == (1, True)
    assert local_workers("cpu", None, 4, **gpu_host) == (4, False)
    assert local_workers("auto", None, 2, **cpu_host) == (8, False)
    assert local_workers("auto", 3, 1, **gpu_host) == (3, True)
    assert [worker_device("auto", name, 2) for name in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_device("cuda:1", 0, 2) == "cuda:1" and worker_device("auto", 0, 1) == "auto"
    assert worker_device("auto", "tcp://remote:1234", 2) == "auto"  # not a local worker
