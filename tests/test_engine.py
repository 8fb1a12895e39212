"""The inference engine: batches, out-of-memory recovery, model preparation, stage timing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from streamdenoise.engine import batches
from streamdenoise.engine.batches import (
    compile_by_default,
    default_batch_size,
    is_compiled,
    map_batches,
    network_dtype,
    prepare_model,
    run_batches,
)
from streamdenoise.engine.profiling import record_stages, stage
from streamdenoise.errors import DeviceError
from streamdenoise.model.pipeline import DenoiseSettings
from streamdenoise.model.unet import ScoreUNet, UNetConfig
from streamdenoise.outputs import OutputLayout
from streamdenoise.processing import OutputOptions, process_micrograph

CPU = torch.device("cpu")


def _tiles(n: int, side: int = 8) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, side, side)).astype(np.float32)


def _scaled(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return x * values[:, None, None]


@pytest.fixture(autouse=True)
def _forget_reduced_batch_sizes() -> None:
    batches._largest_batch_that_fit.clear()


def test_map_batches_uses_fixed_batch_shapes_and_drops_padding() -> None:
    tiles = np.random.default_rng(3).standard_normal((7, 16, 16)).astype(np.float32)
    seen: list[tuple[int, ...]] = []

    def fn(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        return batch * 2 + 1

    out = map_batches(tiles, fn, batch_size=3)
    assert seen == [(3, 16, 16)] * 3
    np.testing.assert_array_equal(out, tiles * 2 + 1)
    with pytest.raises(ValueError, match="batch_size"):
        map_batches(tiles, fn, batch_size=0)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7])
def test_run_batches_applies_compute_to_every_tile_with_its_value(batch_size: int) -> None:
    tiles = _tiles(5)
    values = np.arange(1, 6, dtype=np.float32)
    seen: list[int] = []

    def compute(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        seen.append(len(x))
        return _scaled(x, v)

    out = run_batches(tiles, values, compute, batch_size, CPU)
    np.testing.assert_array_equal(out, tiles * values[:, None, None])
    assert set(seen) == {batch_size}  # fixed shapes: the last batch is padded
    seen.clear()
    out = run_batches(tiles, values, compute, batch_size, CPU, pad=False)
    np.testing.assert_array_equal(out, tiles * values[:, None, None])
    assert sum(seen) == 5  # no padding


def test_out_of_memory_halves_the_batch_and_remembers_it() -> None:
    tiles, values = _tiles(9), np.ones(9, dtype=np.float32)
    sizes: list[int] = []

    def compute(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        sizes.append(len(x))
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return _scaled(x, v)

    out = run_batches(tiles, values, compute, 8, CPU)
    np.testing.assert_array_equal(out, tiles)
    assert sizes[:2] == [8, 4] and set(sizes[2:]) == {2}
    sizes.clear()
    run_batches(tiles, values, compute, 8, CPU)  # starts at the size that fitted
    assert set(sizes) == {2}


def test_a_single_tile_that_does_not_fit_is_a_device_error() -> None:
    def compute(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")

    with pytest.raises(DeviceError, match="single 8² tile"):
        run_batches(_tiles(3), np.ones(3, dtype=np.float32), compute, 4, CPU)


def test_compiled_models_are_recognised() -> None:
    model = _model()
    assert not is_compiled(model)
    assert is_compiled(torch.compile(model, backend="eager"))


def test_cpu_compiles_by_default_only_with_a_cxx_compiler(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    assert not compile_by_default(CPU)
    compiler = tmp_path / "g++"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    assert compile_by_default(CPU)


def test_a_cpu_compiles_by_default_only_in_float32(monkeypatch, tmp_path) -> None:
    compiler = tmp_path / "g++"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert compile_by_default(CPU, torch.float32)
    assert not compile_by_default(CPU, torch.bfloat16)  # eager oneDNN bfloat16 is as fast


@pytest.mark.parametrize("native", [True, False])
def test_the_network_runs_in_bfloat16_where_the_device_has_it_natively(
    monkeypatch, native: bool
) -> None:
    monkeypatch.setattr(batches, "native_bfloat16", lambda device: native)
    assert network_dtype(CPU) == (torch.bfloat16 if native else torch.float32)
    assert network_dtype(CPU, torch.float32) == torch.float32  # what the user asked wins
    assert network_dtype(CPU, torch.bfloat16) == torch.bfloat16


def test_default_batch_size_per_device() -> None:
    assert default_batch_size(CPU) == 1
    assert default_batch_size(torch.device("cuda", 0)) == 8


def _model() -> ScoreUNet:
    torch.manual_seed(0)
    model = ScoreUNet(UNetConfig(base_channels=8, channel_multipliers=(1, 2), norm_groups=0))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.1)
    return model


def test_prepared_model_is_channels_last_in_eval_mode_and_unchanged_in_output() -> None:
    model = _model()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = model(x)
    prepared = prepare_model(model.train(), CPU, compile_model=False)
    assert not prepared.training
    assert prepared.stem.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), expected, rtol=1e-5, atol=1e-6)


# Inductor's weight freezing on CPU goes through torch.jit internally, which warns.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compiled_model_on_cpu_matches_eager() -> None:
    model = _model()
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        expected = model(x)
        compiled = prepare_model(model, CPU, compile_model=True)
        torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_overlapped_cuda_batches_match_the_cpu() -> None:
    tiles, values = _tiles(11, side=64), np.linspace(0.5, 2, 11).astype(np.float32)
    device = torch.device("cuda", 0)
    for pad in (True, False):
        for overlap in (True, False):
            out = run_batches(tiles, values, _scaled, 4, device, pad=pad, overlap=overlap)
            np.testing.assert_allclose(out, tiles * values[:, None, None], rtol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_two_threads_share_the_pinned_slots_without_mixing_batches() -> None:
    """The model stage and a session adaptation's criterion run batches of the same tile
    size on one device at once: each gets its own tiles back."""
    device = torch.device("cuda", 0)
    jobs = [(_tiles(40, side=64) + k, np.full(40, k + 1, np.float32)) for k in range(4)]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda job: run_batches(*job, _scaled, 4, device), jobs))
    for (tiles, values), out in zip(jobs, outs, strict=True):
        np.testing.assert_allclose(out, tiles * values[:, None, None], rtol=1e-6)


def test_stages_are_recorded_only_inside_record_stages() -> None:
    with stage("outside"):
        pass
    with record_stages() as seconds:
        with stage("a"):
            pass
        with stage("a"):
            pass
    assert list(seconds) == ["a"] and seconds["a"] >= 0


def test_process_micrograph_reports_every_stage(tmp_path: Path) -> None:
    image = np.random.default_rng(1).poisson(20, size=(128, 128)).astype(np.float32)
    source = tmp_path / "mic.mrc"
    with mrcfile.new(source) as mrc:
        mrc.set_data(image)
        mrc.voxel_size = 2.0
    layout = OutputLayout(tmp_path, tmp_path / "out")
    with record_stages() as seconds:
        process_micrograph(
            source,
            prepare_model(_model(), CPU, compile_model=False),
            4.0,
            DenoiseSettings(tile=64, overlap=16),
            layout,
            OutputOptions(diameter_angstrom=40.0),
        )
    expected = {"read", "bin", "noise estimate", "normalise", "tile", "model", "blend", "guard"}
    expected |= {"statistics", "write MRC", "write OME-Zarr", "write thumbnail"}
    expected |= {"write sidecar", "write picks"}
    assert set(seconds) == expected
    assert all(value >= 0 for value in seconds.values())
    sidecar = json.loads((tmp_path / "out" / "denoised" / "mic.json").read_text())
    assert set(sidecar["guard"]) >= {"passed", "residual_power", "invented_power", "summary"}
    with mrcfile.open(tmp_path / "out" / "denoised" / "mic.mrc") as mrc:
        labels = [bytes(label).decode().strip() for label in mrc.header.label[: mrc.header.nlabl]]
    assert any(label.startswith("streamdenoise") for label in labels)
    assert any(label.startswith("guard") for label in labels)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_runtime_warms_up_in_the_precision_it_serves(precision: str) -> None:
    """A compiled network compiles for the autocast it runs under: the warm-up must use
    the serving precision, or the first micrograph compiles again."""
    from streamdenoise.engine.batches import PRECISIONS
    from streamdenoise.runtime import load_runtime, warm_up

    runtime = load_runtime(None, "cpu", compile_model=False, dtype=PRECISIONS[precision])
    assert runtime.dtype == PRECISIONS[precision] and runtime.label == f"cpu, {precision}"
    seen = []

    class _Recording(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
            return x

    runtime.network = _Recording()
    assert warm_up(runtime, 1, 32, compile_requested=False, stopping=lambda: False)
    assert seen == [torch.bfloat16 if precision == "bfloat16" else False]
