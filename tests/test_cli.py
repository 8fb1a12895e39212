"""The command line, run as users run it: the installed `streamdenoise` console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from readers import assert_valid_mrc, star_tables, strict_json

import streamdenoise

EXECUTABLE = str(Path(sys.executable).with_name("streamdenoise"))


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EXECUTABLE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("session")
    result = run(
        "simulate", str(out), "-n", "3", "--detector", "small", "--bin", "4", "--seed", "5"
    )
    assert result.returncode == 0, result.stderr
    return out


def test_help_and_version() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("simulate", "denoise", "train"):
        assert command in result.stdout
    version = run("--version")
    assert version.returncode == 0 and streamdenoise.__version__ in version.stdout
    assert "--reference" in run("simulate", "--help").stdout


def test_simulate_writes_a_session(session: Path) -> None:
    micrographs = sorted((session / "micrographs").glob("*.mrc"))
    assert len(micrographs) == 3
    with mrcfile.open(micrographs[0], permissive=False) as mrc:
        assert mrc.data.shape == (256, 256)
        assert float(mrc.voxel_size.x) == pytest.approx(4.0)
    assert len(list((session / "ground_truth").glob("*_particles.star"))) == 3


def test_simulate_rejects_a_bad_reference(tmp_path: Path) -> None:
    result = run(
        "simulate", str(tmp_path / "out"), "-n", "1", "--reference", str(tmp_path / "no.pdb")
    )
    assert result.returncode == 2
    assert "no.pdb" in result.stderr and "no such file" in result.stderr


def test_denoise_with_the_default_model(session: Path, tmp_path: Path) -> None:
    micrographs = sorted((session / "micrographs").glob("*.mrc"))
    broken = tmp_path / "broken.mrc"
    broken.write_bytes(b"this is not a micrograph")
    result = run(
        "denoise",
        str(micrographs[0]),
        str(broken),
        "--out",
        str(tmp_path / "den"),
        "--device",
        "cpu",
    )
    assert result.returncode == 1  # one of two failed
    assert "broken.mrc" in result.stderr
    output = tmp_path / "den" / micrographs[0].name
    assert_valid_mrc(output)  # and names what made it
    with mrcfile.open(output, permissive=False) as mrc:
        denoised = np.asarray(mrc.data)
        assert float(mrc.voxel_size.x) == pytest.approx(4.0)
    with mrcfile.open(micrographs[0]) as mrc:
        raw = np.asarray(mrc.data)
    assert denoised.shape == raw.shape
    assert denoised.std() < raw.std()  # noise was removed
    assert np.corrcoef(denoised.ravel(), raw.ravel())[0, 1] > 0.3


def test_denoise_goes_on_after_an_internal_error_in_one_micrograph(
    session: Path, tmp_path: Path
) -> None:
    """A bug met on one file (here a stand-in IndexError, as the Thon-ring fit once raised
    on a 4.0044 Å/px binned EPU micrograph) fails that file alone, with its traceback for
    the report; the other micrographs are denoised and the exit code is 1."""
    first, second = sorted((session / "micrographs").glob("*.mrc"))[:2]
    script = (
        "import sys, streamdenoise.processing as processing\n"
        "real = processing.process_micrograph\n"
        "def buggy(path, *args, **kwargs):\n"
        f"    if path.name == {first.name!r}:\n"
        "        raise IndexError('boolean index did not match')\n"
        "    return real(path, *args, **kwargs)\n"
        "processing.process_micrograph = buggy\n"
        "from streamdenoise.cli import app\n"
        "app(sys.argv[1:], prog_name='streamdenoise')\n"
    )
    out = tmp_path / "den"
    result = subprocess.run(
        [sys.executable, "-c", script, "denoise", str(first), str(second), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert f"{first}: internal error (IndexError" in result.stderr
    assert "Traceback" in result.stderr and "Denoised 1 of 2" in result.stderr
    assert not (out / first.name).exists()
    assert_valid_mrc(out / second.name)


def test_denoise_refuses_an_unusable_gpu(session: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is usable here")
    micrograph = next((session / "micrographs").glob("*.mrc"))
    result = run("denoise", str(micrograph), "--out", str(tmp_path), "--device", "cuda:0")
    assert result.returncode == 2 and "CUDA is not available" in result.stderr


@pytest.mark.parametrize("guided", [False, True])
def test_train_with_and_without_reference(session: Path, tmp_path: Path, guided: bool) -> None:
    micrographs = [str(p) for p in sorted((session / "micrographs").glob("*.mrc"))]
    out = tmp_path / "model.pt"
    args = [
        "train",
        *micrographs,
        "--model-out",
        str(out),
        "--steps",
        "4",
        "--crop",
        "64",
        "--batch",
        "2",
    ]
    args += ["--device", "cpu", "--clean-dir", str(session / "ground_truth")]
    if guided:
        reference = Path(streamdenoise.__file__).parent / "data" / "6msm.pdb.gz"
        args += ["--reference", str(reference)]
    result = run(*args, env={"STREAMDENOISE_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    from streamdenoise.model.modelfile import load_model

    loaded = load_model(out)
    assert loaded.pixel_size == 4.0 and loaded.provenance["guidance"] is guided
    assert loaded.provenance["steps"] == 4
    assert not out.with_name("model.pt.ckpt").exists()


@pytest.mark.parametrize("learning_rate", ["2e-3", "0"])
def test_train_init_writes_the_adapted_model_only_when_the_criterion_improves(
    session: Path, tmp_path: Path, learning_rate: str
) -> None:
    """The swap rule end to end (tests/test_training.py shows a case that improves): OUT
    exists exactly when the held-out criterion beat the model and no denoising; a zero
    learning rate changes nothing, so nothing is written."""
    from streamdenoise.model.modelfile import load_model, save_model
    from streamdenoise.model.unet import ScoreUNet, UNetConfig

    initial = tmp_path / "initial.pt"
    network = ScoreUNet(UNetConfig(base_channels=4, channel_multipliers=(1, 2), norm_groups=0))
    save_model(initial, network, pixel_size=4.0, provenance={"trained_by": "test"})
    micrographs = [str(p) for p in sorted((session / "micrographs").glob("*.mrc"))]
    out = tmp_path / "adapted.pt"
    result = run(
        "train", *micrographs, "--init", str(initial), "--model-out", str(out), "--steps", "30",
        "--crop", "64", "--batch", "4", "--learning-rate", learning_rate, "--device", "cpu",
    )  # fmt: skip
    if result.returncode == 0:
        assert learning_rate != "0"
        provenance = load_model(out).provenance
        assert provenance["initial_model"] == str(initial)
        after = provenance["held_out_criterion_after"]
        assert after > provenance["held_out_criterion_before"]
        assert after > provenance["held_out_criterion_input"]
    else:
        assert result.returncode == 1 and "Not written" in result.stderr, result.stderr
        assert "no denoising" in result.stderr
        assert not out.exists()


def test_denoise_refuses_to_overwrite_an_input_or_its_own_outputs(
    session: Path, tmp_path: Path
) -> None:
    micrographs = sorted((session / "micrographs").glob("*.mrc"))
    original = micrographs[0].read_bytes()
    result = run("denoise", str(micrographs[0]), "--out", str(micrographs[0].parent))
    assert result.returncode == 2 and "would overwrite the input" in result.stderr
    assert micrographs[0].read_bytes() == original
    twin = tmp_path / "b" / micrographs[0].name
    twin.parent.mkdir()
    twin.write_bytes(original)
    result = run("denoise", str(micrographs[0]), str(twin), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "would both be written to" in result.stderr
    assert not (tmp_path / "o").exists()  # refused before any work


def _grid_squares(session: Path, root: Path) -> list[Path]:
    """Two session micrographs as EPU lays them out, under one name in two folders:
    ROOT/GridSquare_{1,2}/Data/FoilHole_1.mrc."""
    micrographs = sorted((session / "micrographs").glob("*.mrc"))[:2]
    copies = []
    for square, micrograph in enumerate(micrographs, start=1):
        copy = root / f"GridSquare_{square}" / "Data" / "FoilHole_1.mrc"
        copy.parent.mkdir(parents=True)
        copy.write_bytes(micrograph.read_bytes())
        copies.append(copy)
    return copies


def test_denoise_mirror_writes_what_watch_writes_below_the_inputs_common_folder(
    session: Path, tmp_path: Path
) -> None:
    inputs = _grid_squares(session, tmp_path / "Movies")
    out = tmp_path / "den"
    args = ["denoise", *map(str, inputs), "--out", str(out), "--device", "cpu", "--mirror"]
    result = run(*args, "--particle-diameter", "120", "--picks-frame", "both", "--no-zarr")
    assert result.returncode == 0, result.stderr
    for square in ("GridSquare_1", "GridSquare_2"):
        mrc = out / "denoised" / square / "Data" / "FoilHole_1.mrc"
        assert_valid_mrc(mrc)
        sidecar = strict_json(mrc.with_suffix(".json"))
        assert sidecar["source"].endswith(f"{square}/Data/FoilHole_1.mrc")
        readiness = sidecar["readiness"]
        assert readiness["diameter_angstrom"] == 120.0
        assert readiness["diameter_source"] == "given"
        for folder in ("picks", "picks_denoised"):
            picks = out / folder / square / "Data"
            assert (picks / "FoilHole_1.star").is_file() and (picks / "FoilHole_1.box").is_file()
        assert (out / "thumbnails" / square / "Data" / "FoilHole_1.png").is_file()
    listed = star_tables(out / "micrographs_denoised.star")["micrographs"]
    assert len(listed) == 2
    assert (out / "coordinates.star").is_file() and not (out / "denoised.zarr").exists()


def test_denoise_mirror_never_overwrites_an_input(session: Path, tmp_path: Path) -> None:
    """An input inside OUT/denoised/ is where its own mirror would go: refused before any
    work, the input untouched."""
    micrograph = next((session / "micrographs").glob("*.mrc"))
    inside = tmp_path / "den" / "denoised" / "FoilHole_1.mrc"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(micrograph.read_bytes())
    result = run("denoise", str(inside), "--out", str(tmp_path / "den"), "--mirror")
    assert result.returncode == 2 and "would overwrite the input" in result.stderr
    assert str(inside) in result.stderr
    assert inside.read_bytes() == micrograph.read_bytes()
    assert sorted(tmp_path.rglob("*")) == [inside.parent.parent, inside.parent, inside]


def test_denoise_flat_names_same_named_inputs_and_refuses_mirror_only_flags(
    session: Path, tmp_path: Path
) -> None:
    inputs = _grid_squares(session, tmp_path / "Movies")
    out = tmp_path / "den"
    result = run("denoise", *map(str, inputs), "--out", str(out))
    assert result.returncode == 2 and "would both be written to" in result.stderr
    assert all(str(path) in result.stderr for path in inputs) and "--mirror" in result.stderr
    result = run("denoise", str(inputs[0]), "--out", str(out), "--particle-diameter", "120")
    assert result.returncode == 2, result.stderr
    assert "--particle-diameter: only with --mirror" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_denoise_and_train_check_their_outputs_before_work(
    session: Path, tmp_path: Path, kind: str
) -> None:
    micrograph = str(next((session / "micrographs").glob("*.mrc")))
    if kind == "file":
        out = tmp_path / "a-file"
        out.write_text("")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "new"
    result = run("denoise", micrograph, "--out", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(out) in result.stderr and "--out" in result.stderr
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = run("train", micrograph, "--model-out", str(folder), "--steps", "100000")
    assert result.returncode == 2 and "is a folder" in result.stderr  # before any training


@pytest.mark.parametrize(
    "args, names",
    [
        (["simulate", "OUT", "--carbon-edge-fraction", "2"], "--carbon-edge-fraction"),
        (["demo", "--rate", "-1"], "--rate"),
        (["train", "MIC", "--model-out", "m.pt", "--steps", "0"], "--steps"),
        (["train", "MIC", "--model-out", "m.pt", "--crop", "4000"], "--crop 4000"),
    ],
)
def test_nonsense_options_are_refused(session: Path, tmp_path: Path, args, names) -> None:
    micrograph = str(next((session / "micrographs").glob("*.mrc")))
    args = [micrograph if a == "MIC" else str(tmp_path / a) if a in ("OUT", "m.pt") else a
            for a in args]  # fmt: skip
    result = run(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert names in result.stderr


def test_quarantine_status_and_report_follow_state_dir(tmp_path: Path) -> None:
    from streamdenoise.watch import Journal

    out, state = tmp_path / "out", tmp_path / "state"
    out.mkdir()
    state.mkdir()
    with Journal(state / "journal.sqlite", max_attempts=1) as journal:
        journal.mark_seen(tmp_path / "bad.mrc", 10, 1, "h")
        journal.mark_failed(tmp_path / "bad.mrc", "truncated: 8 of 1,024 bytes")
    assert run("quarantine", str(out)).returncode == 2  # no journal in OUT itself
    listed = run("quarantine", str(out), "--state-dir", str(state))
    assert listed.returncode == 0 and "truncated" in listed.stdout + listed.stderr
    report = run("report", str(out), "--state-dir", str(state))
    assert report.returncode == 0 and (out / "report.html").is_file()
    status = run("status", str(out), "--state-dir", str(state))
    assert status.returncode == 2 and str(state / "status.json") in status.stderr
    retried = run("quarantine", str(out), "--state-dir", str(state), "--retry")
    assert retried.returncode == 0 and "when a daemon next runs" in retried.stderr


def test_simulate_refuses_an_existing_session(session: Path) -> None:
    before = sorted(p.name for p in (session / "micrographs").iterdir())
    result = run("simulate", str(session), "-n", "1", "--detector", "small", "--bin", "4")
    assert result.returncode == 2 and "already holds a simulated session" in result.stderr
    assert sorted(p.name for p in (session / "micrographs").iterdir()) == before


def test_watch_names_an_unusable_optics_file_before_starting(tmp_path: Path) -> None:
    star = tmp_path / "corrected_micrographs.star"
    star.write_text("data_micrographs\n\nloop_\n_rlnMicrographName #1\na.mrc\n")
    result = run("watch", str(tmp_path), "--optics-from", str(star), "--headless")
    assert result.returncode == 2
    assert f"{star}: no data_optics table" in result.stderr
    result = run("batch", str(tmp_path), "--out", str(tmp_path / "o"), "--picks-frame", "x")
    assert result.returncode == 2 and "--picks-frame = 'x': expected one of" in result.stderr


@pytest.mark.parametrize("interrupted", [False, True], ids=["finished", "ctrl-c"])
def test_demo_removes_its_temporary_folder(tmp_path: Path, interrupted: bool) -> None:
    import json
    import signal
    import time

    from streamdenoise.engine.batches import FAKE_COMPILE

    temporary, log = tmp_path / "tmp", tmp_path / "demo.log"
    temporary.mkdir()
    count, rate = ("3", "60") if interrupted else ("1", "0.1")
    env = {**os.environ, "COLUMNS": "200", "TMPDIR": str(temporary), FAKE_COMPILE: "0"}
    args = [EXECUTABLE, "demo", "-n", count, "--rate", rate, "--device", "cpu", "--headless"]
    with open(log, "w") as stderr:
        demo = subprocess.Popen(args, stderr=stderr, env=env, start_new_session=True)
    try:
        if interrupted:  # Ctrl-C while the acquisition waits for its next micrograph
            end = time.monotonic() + 240
            while time.monotonic() < end and demo.poll() is None:
                found = list(temporary.glob("streamdenoise-demo-*/denoised/status.json"))
                if found and json.loads(found[0].read_text() or "{}").get("done") == 1:
                    break
                time.sleep(0.5)
            os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=300) == 0, log.read_text()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert "temporary folder, now removed" in log.read_text()
    assert list(temporary.iterdir()) == []  # was ~330 MB for the default 8 micrographs


def test_help_shows_each_settings_default_and_file_key() -> None:
    """watch, batch and denoise share one declaration per option: one name, its default,
    the key it overrides in the settings file."""
    helps = {command: run(command, "--help") for command in ("watch", "batch", "denoise")}
    for command, result in helps.items():
        assert result.returncode == 0, result.stderr
        text = " ".join(result.stdout.split())  # rich wraps long help lines
        assert "--tile" in text and "(file: denoise.tile) [default: (384)]" in text, command
        assert "--float16 --float32" in text and "[default: (--float32)]" in text, command
        assert "--config" in text and "Settings [denoise]" in text, command
    watch = " ".join(helps["watch"].stdout.split())
    assert "(file: watch.settle_seconds) [default: (2.0)]" in watch
    assert "[default: (*.mrc, *.tif, *.tiff)]" in watch and "Settings [display]" in watch
    assert "--settle-seconds" in watch and "--settle " not in watch  # one name per concept
    simulate = run("simulate", "--help").stdout
    assert "--detector-pixel-size" in simulate and "--pixel-size " not in simulate
    assert "--model-out" in run("train", "--help").stdout


def test_a_settings_file_error_names_file_key_and_type_and_flags_override_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "session.toml"
    config.write_text(f'version = 1\n[watch]\nwatch_dir = "{tmp_path}"\ninclude = "*.mrc"\n')
    result = run("watch", "--config", str(config), "--headless")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{config}: watch.include = '*.mrc': expected an array of strings" in result.stderr
    config.write_text('version = 1\n[outputs]\npicks_frame = "both"\nfloat16 = "yes"\n')
    result = run("batch", str(tmp_path), "--config", str(config), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "outputs.float16 = 'yes': expected true or" in result.stderr
    config.write_text('version = 1\n[denoise]\nbin = 2\n[outputs]\nsuffix = "_f"\n')
    micrograph = tmp_path / "x.mrc"
    micrograph.write_bytes(b"not a micrograph")
    result = run("denoise", str(micrograph), "--config", str(config), "--pixel-size", "4")
    assert result.returncode == 2  # the flag's pixel size meets the file's bin
    assert "give a binning factor or a target pixel size, not both" in result.stderr
