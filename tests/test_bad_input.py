"""Every command against the mistakes people make: bad paths, nonsense options, bad files.

Each row runs one command line and checks what a user sees: the documented exit code (0
done, 1 some inputs failed, 2 usage or environment), one line of error on stderr naming
the file or option (a usage error may use click's short box), and never a traceback.
Commands that start a daemon, a cluster or a thread pool run as real processes (the
installed console script); the rest run in-process with typer's CliRunner, which keeps
stderr apart.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from typer.testing import CliRunner

from streamdenoise.cli import app
from streamdenoise.watch import Journal

EXECUTABLE = str(Path(sys.executable).with_name("streamdenoise"))
ENV = {"COLUMNS": "200"}


@dataclass(frozen=True)
class Case:
    """One command line ({name} fields are files of the `places` fixture), the exit code,
    words stderr must contain, and whether it runs as a separate process."""

    id: str
    args: tuple[str, ...]
    code: int
    words: tuple[str, ...]
    process: bool = False


def case(id: str, line: str, code: int, *words: str, process: bool = False) -> Case:
    return Case(id, tuple(line.split()), code, words, process)


CASES = [
    # -- denoise -------------------------------------------------------------------------
    case("denoise-out-a-file", "denoise {good} --out {file}", 2, "{file}", "--out"),
    case("denoise-out-dev-null", "denoise {good} --out /dev/null", 2, "/dev/null", "--out"),
    case("denoise-out-proc", "denoise {good} --out {proc}", 2, "{proc}", "--out"),
    case("denoise-out-under-a-file", "denoise {good} --out {file}/new", 2, "{file}/new"),
    case("denoise-out-input-folder", "denoise {good} --out {root}", 2, "overwrite the input"),
    case(
        "denoise-bad-files",
        "denoise {text} {truncated} {mode4} {stack} {tiff} {no_pixel} {constant} {missing} "
        "--out {new} --device cpu",
        1,
        *("{text}", "{truncated}", "{mode4}", "{stack}", "{tiff}", "{no_pixel}", "{constant}"),
        "{missing}",
        process=True,
    ),
    case("denoise-tile", "denoise {good} --out {new} --tile 0", 2, "--tile"),
    case("denoise-bin", "denoise {good} --out {new} --bin 0", 2, "--bin"),
    case("denoise-pixel", "denoise {good} --out {new} --input-pixel-size -1", 2, "--input-pixel"),
    case("denoise-model", "denoise {good} --out {new} --model {text}", 2, "{text}"),
    case("denoise-device", "denoise {good} --out {new} --device bogus", 2, "bogus"),
    case("denoise-flatten", "denoise {good} --out {new} --flatten-background 0", 2, "--flatten"),
    # -- train ---------------------------------------------------------------------------
    # (real processes with a timeout: were the output not checked first, they would train)
    case(
        "train-out-folder",
        "train {good} --model-out {folder} --steps 99999",
        2,
        "{folder}",
        process=True,
    ),
    case(
        "train-out-pipe", "train {good} --model-out {fifo} --steps 99999", 2, "{fifo}", process=True
    ),
    case("train-out-proc", "train {good} --model-out {proc}/m.pt", 2, "{proc}", "--model-out"),
    case("train-crop", "train {good} --model-out {new}.pt --crop 4000", 2, "--crop 4000"),
    case("train-steps", "train {good} --model-out {new}.pt --steps 0", 2, "--steps"),
    case("train-bad-file", "train {text} --model-out {new}.pt", 2, "{text}"),
    case("train-tiff", "train {tiff} --model-out {new}.pt", 2, "{tiff}", "--input-pixel-size"),
    case("train-init", "train {good} --model-out {new}.pt --init {text}", 2, "{text}"),
    # -- simulate ------------------------------------------------------------------------
    case("simulate-fraction", "simulate {new} --carbon-edge-fraction 2", 2, "--carbon-edge"),
    case("simulate-count", "simulate {new} -n 0", 2, "--count"),
    case("simulate-bin", "simulate {new} --bin 0", 2, "--bin"),
    case("simulate-dose", "simulate {new} --dose -5", 2, "--dose"),
    case("simulate-detector", "simulate {new} --detector nonsense", 2, "nonsense"),
    case("simulate-defocus", "simulate {new} --defocus abc", 2, "--defocus"),
    case("simulate-out-a-file", "simulate {file}", 2, "{file}"),
    case("simulate-out-proc", "simulate {proc}", 2, "{proc}"),
    case("simulate-reference", "simulate {new} --reference {text}", 2, "{text}"),
    case("simulate-a-session", "simulate {session}", 2, "already holds a simulated session"),
    # -- watch (a daemon: real processes) ------------------------------------------------
    case("watch-out-a-file", "watch {folder} --out {file}", 2, "{file}", "--out", process=True),
    case("watch-out-proc", "watch {folder} --out {proc}", 2, "{proc}", "--out", process=True),
    case("watch-out-under-a-file", "watch {folder} --out {file}/x", 2, "{file}/x", process=True),
    case("watch-state-proc", "watch {folder} --state-dir {proc}", 2, "--state-dir", process=True),
    case(
        "watch-corrupt-journal",
        "watch {folder} --out {corrupt} --no-compile --device cpu",
        2,
        "{corrupt}/journal.sqlite",
        "move it",
        process=True,
    ),
    case("watch-toml-syntax", "watch {folder} --config {toml_syntax}", 2, "{toml_syntax}"),
    case("watch-toml-type", "watch {folder} --config {toml_type}", 2, "settle_seconds"),
    case("watch-toml-nan", "watch {folder} --config {toml_nan}", 2, "timeout_seconds"),
    case("watch-toml-unknown", "watch {folder} --config {toml_unknown}", 2, "nonsense"),
    case("watch-toml-missing", "watch {folder} --config {missing}", 2, "{missing}"),
    case("watch-missing-folder", "watch {missing}", 2, "{missing}"),
    case("watch-order", "watch {folder} --order bogus", 2, "bogus"),
    case("watch-settle", "watch {folder} --settle-seconds -1", 2, "--settle-seconds"),
    # -- status, quarantine, report -----------------------------------------------------
    case("status-nothing", "status {folder}", 2, "{folder}/status.json"),
    case("status-corrupt", "status {corrupt} --follow", 2, "{corrupt}/status.json"),
    case("quarantine-no-journal", "quarantine {folder}", 2, "{folder}/journal.sqlite"),
    case("quarantine-corrupt", "quarantine {corrupt}", 2, "{corrupt}/journal.sqlite", "move it"),
    case("quarantine-retry-corrupt", "quarantine {corrupt} --retry", 2, "journal.sqlite"),
    case("report-corrupt", "report {corrupt}", 2, "{corrupt}/journal.sqlite", "move it"),
    case("report-output-folder", "report {state} --html {folder}", 2, "{folder}", "--html"),
    case("report-output-pipe", "report {state} --html {fifo}", 2, "{fifo}", "--html"),
    case("report-output-proc", "report {state} --html {proc}/r.html", 2, "{proc}"),
    case("report-output-under-a-file", "report {state} --html {file}/r.html", 2, "{file}"),
    # -- demo (a daemon and an acquisition thread: real processes) -----------------------
    case("demo-out-a-file", "demo --out {file}", 2, "{file}", "--out", process=True),
    case("demo-rate", "demo --rate -1", 2, "--rate", process=True),
    case("demo-count", "demo -n 0", 2, "--count", process=True),
    # -- batch (a Dask cluster: real processes) ------------------------------------------
    case("batch-out-a-file", "batch {good} --out {file}", 2, "{file}", "--out", process=True),
    case("batch-out-proc", "batch {good} --out {proc}", 2, "{proc}", "--out", process=True),
    case("batch-missing", "batch {missing} --out {new}", 2, "{missing}", process=True),
    case("batch-workers", "batch {good} --out {new} --workers 0", 2, "--workers", process=True),
    # -- the program itself ------------------------------------------------------------------
    case("unknown-command", "denoize {good}", 2, "denoize"),
]


def write_mrc(path: Path, data: np.ndarray, pixel_size: float = 4.0) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = pixel_size
    return path


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Named files and folders for the table, all real (root runs these tests, so
    unwritable places are under /proc or under a regular file, not chmod'ed folders)."""
    root = tmp_path_factory.mktemp("bad-input")
    noisy = np.random.default_rng(0).poisson(20.0, (256, 256)).astype(np.float32)
    places = {
        "root": root,
        "good": write_mrc(root / "good.mrc", noisy),
        "no_pixel": write_mrc(root / "no_pixel.mrc", noisy, pixel_size=0.0),
        "constant": write_mrc(root / "constant.mrc", np.ones((256, 256), np.float32)),
        "mode4": write_mrc(root / "complex.mrc", np.zeros((64, 64), np.complex64)),
        "stack": write_mrc(root / "stack.mrc", np.zeros((3, 64, 64), np.float32)),
        "truncated": root / "truncated.mrc",
        "text": root / "text.mrc",
        "tiff": root / "corrupt.tif",
        "file": root / "a-file",
        "fifo": root / "a-pipe",
        "folder": root / "a-folder",
        "session": root / "session",
        "corrupt": root / "corrupt-state",
        "state": root / "state",
        "toml_syntax": root / "syntax.toml",
        "toml_type": root / "type.toml",
        "toml_nan": root / "nan.toml",
        "toml_unknown": root / "unknown.toml",
        "missing": root / "no-such-thing",
        "proc": Path("/proc/streamdenoise-no-such-place"),
    }
    places["truncated"].write_bytes(places["good"].read_bytes()[:20_000])
    places["text"].write_text("not a micrograph, just words\n" * 50)
    places["tiff"].write_bytes(b"II*\x00" + b"\xff" * 200)
    places["file"].write_text("a plain file\n")
    os.mkfifo(places["fifo"])
    places["folder"].mkdir()
    places["session"].mkdir()
    (places["session"] / "session.json").write_text("{}")
    places["corrupt"].mkdir()
    (places["corrupt"] / "journal.sqlite").write_bytes(b"this is not a database " * 100)
    (places["corrupt"] / "status.json").write_text("{not json")
    places["state"].mkdir()
    with Journal(places["state"] / "journal.sqlite", max_attempts=1) as journal:
        journal.mark_seen(root / "x.mrc", 10, 1, "h")
        journal.mark_failed(root / "x.mrc", "truncated")
    places["toml_syntax"].write_text("watch_dir = [\n")
    places["toml_type"].write_text('version = 1\n[watch]\nsettle_seconds = "soon"\n')
    places["toml_nan"].write_text("version = 1\n[watch]\ntimeout_seconds = nan\n")
    places["toml_unknown"].write_text("version = 1\nnonsense = 1\n")
    return places


def run(case: Case, places: dict[str, Path], new: Path) -> tuple[int, str]:
    """Run the case's command line; returns (exit code, stderr)."""
    fields = {name: str(path) for name, path in places.items()} | {"new": str(new)}
    args = [arg.format(**fields) for arg in case.args]
    if case.process:
        done = subprocess.run(
            [EXECUTABLE, *args],
            capture_output=True,
            text=True,
            env={**os.environ, **ENV},
            timeout=120,
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        return done.returncode, done.stderr
    result = CliRunner().invoke(app, args, env=ENV)
    if not isinstance(result.exception, SystemExit | None):
        raise AssertionError(f"{case.id}: {result.exception!r}") from result.exception
    return result.exit_code, result.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_mistake_gets_one_line_and_the_documented_code(
    case: Case, places: dict[str, Path], tmp_path: Path
) -> None:
    journal = places["corrupt"] / "journal.sqlite"
    journal_before = journal.read_bytes()
    code, stderr = run(case, places, tmp_path / "new")
    fields = {name: str(path) for name, path in places.items()} | {"new": str(tmp_path / "new")}
    assert code == case.code, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    text = " ".join(line.strip("│ ") for line in lines)
    for word in case.words:
        assert word.format(**fields) in text, stderr
    if code == 1:  # each input that failed is named on its own line
        failed = [line for line in lines if line.startswith("failed:")]
        assert len(failed) == len(case.words), stderr
    elif "Usage:" in stderr:  # click's usage error: the usage line, a hint, a one-line box
        assert len(lines) <= 5 and "Error" in stderr, stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    # Nothing was destroyed on the way: the damaged journal, special files, the inputs.
    assert journal.read_bytes() == journal_before
    assert stat.S_ISFIFO(places["fifo"].stat().st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert places["file"].read_text() == "a plain file\n"
    assert code != 2 or not (tmp_path / "new").exists()  # refused before making anything
