"""Soak the live daemon: thousands of micrographs, bad files mixed in, `kill -9` now and then.

    python benchmarks/soak.py [--micrographs 2000] [--kill-every 300] [--bad-fraction 0.03]

A feeder writes small simulated micrographs (256² at 4 Å/px, a cached pool of distinct
ones copied under new names: hidden temporary, then rename) into a watched folder while
`streamdenoise watch` runs as its own process, keeping a short backlog. Now and then it
drops a bad file instead (text named .mrc, empty, truncated, NaN values, corrupt TIFF).
Every --kill-every completions the daemon is killed with SIGKILL and started again at
once; at the end it is stopped with SIGTERM. Inputs are deleted once done (disk stays
bounded); outputs are kept.

Checks, each printed and written to the "Soak" section of benchmarks/RESULTS.md:
- none lost: every good micrograph is `done` in the journal, its denoised MRC exists and
  the STAR file lists it once; every bad file is quarantined;
- none done twice: a denoised MRC is never rewritten once the journal says it is done
  (its inode and mtime are recorded then and compared at the end);
- memory flat: the daemon's RSS, sampled every 0.5 s once each life has done 20
  micrographs; mean of the last quarter of the samples against the first (≤ 5 %), and the
  same within the longest life;
- journal and status consistent: after the last stop, status.json's counts equal the
  journal's, state "stopped".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np
from daemon import proc_status
from results import cached_micrographs, markdown_table, write_section

from streamdenoise.io import read_star
from streamdenoise.physics.session import SessionSpec

EXECUTABLE = str(Path(sys.executable).with_name("streamdenoise"))
BAD_KINDS = ("text", "empty", "truncated", "nan", "tiff")
WARM = 20
"""Completions in a daemon's life before its RSS is sampled (model loaded, buffers made)."""


def write_bad(folder: Path, index: int, kind: str, good: Path) -> Path:
    """A bad input of `kind`, written under a hidden name and renamed into place."""
    target = folder / f"bad_{index:05d}.{'tif' if kind == 'tiff' else 'mrc'}"
    temporary = folder / f".{target.name}.part"
    if kind == "text":
        temporary.write_text("not a micrograph\n" * 100)
    elif kind == "empty":
        temporary.write_bytes(b"")
    elif kind == "truncated":
        temporary.write_bytes(good.read_bytes()[:50_000])
    elif kind == "nan":
        with mrcfile.new(temporary, overwrite=True) as mrc:
            mrc.set_data(np.zeros((256, 256), np.float32))
            mrc.voxel_size = 4.0
        with open(temporary, "r+b") as handle:
            handle.seek(1024)
            handle.write(np.full(64, np.nan, np.float32).tobytes())
    else:
        temporary.write_bytes(b"II*\x00" + os.urandom(400))
    os.replace(temporary, target)
    return target


def feed(pool: list[Path], folder: Path, index: int) -> Path:
    target = folder / f"mic_{index:05d}.mrc"
    temporary = folder / f".{target.name}.part"
    shutil.copyfile(pool[index % len(pool)], temporary)
    os.replace(temporary, target)
    return target


def rows(out: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """{input name: (state, error, outputs JSON)} from the journal."""
    try:
        with sqlite3.connect(out / "journal.sqlite", timeout=30) as db:
            found = db.execute("SELECT path, state, error, outputs FROM files").fetchall()
    except sqlite3.Error:
        return {}
    return {Path(path).name: (state, error, outputs) for path, state, error, outputs in found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micrographs", type=int, default=2000, help="Good micrographs.")
    parser.add_argument("--kill-every", type=int, default=300, help="Completions between kills.")
    parser.add_argument("--bad-fraction", type=float, default=0.03)
    parser.add_argument("--backlog", type=int, default=6, help="Inputs kept waiting.")
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    spec = SessionSpec(count=args.pool, seed=91, detector="small", binning=4)  # 256², 4 Å/px
    pool = cached_micrographs("soak-pool", spec, "soak_", 2)
    root = Path(tempfile.mkdtemp(prefix="streamdenoise-soak-"))
    watch, out = root / "in", root / "out"
    watch.mkdir()
    command = [
        EXECUTABLE, "watch", str(watch), "--out", str(out), "--device", args.device,
        "--headless", "--no-compile", "--settle-seconds", "0.3", "--timeout-seconds", "5",
        "--rescan-interval", "5", "--status-interval", "1",
    ]  # fmt: skip
    log = open(root / "daemon.log", "w")  # noqa: SIM115 - closed below

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    daemon = start()
    lives: list[list[float]] = [[]]
    life_start_done = 0
    kills, fed, bad = 0, 0, {}
    done_at: dict[str, tuple[int, int]] = {}  # denoised MRC → (inode, mtime_ns) when done
    recorded: set[str] = set()  # inputs whose output is in done_at
    started = time.monotonic()
    next_kill = args.kill_every

    def observe() -> int:
        """Record outputs newly done, delete their inputs, sample RSS; returns done count."""
        found = rows(out)
        done = 0
        for name, (state, _, outputs) in found.items():
            if state != "done" or not name.startswith("mic_"):
                continue
            done += 1
            if name not in recorded:
                recorded.add(name)
                mrc = out / json.loads(outputs)["mrc"]  # relative to OUT (or absolute)
                info = os.stat(mrc)
                done_at[mrc] = (info.st_ino, info.st_mtime_ns)
                (watch / name).unlink(missing_ok=True)
        if done - life_start_done >= WARM and (rss := proc_status(daemon.pid).get("VmRSS")):
            lives[-1].append(rss)
        return done

    try:
        done = 0
        while done < args.micrographs:
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({daemon.returncode}); see {root}")
            if fed < args.micrographs and fed - done < args.backlog:
                if rng.random() < args.bad_fraction:
                    kind = BAD_KINDS[len(bad) % len(BAD_KINDS)]
                    bad[write_bad(watch, len(bad), kind, pool[0]).name] = kind
                feed(pool, watch, fed)
                fed += 1
            done = observe()
            if done >= next_kill and done < args.micrographs:
                daemon.send_signal(signal.SIGKILL)
                daemon.wait()
                kills += 1
                next_kill += args.kill_every
                print(f"{done} done after {time.monotonic() - started:.0f} s: kill -9", flush=True)
                daemon = start()
                lives.append([])
                life_start_done = done
            time.sleep(0.1 if fed - done < args.backlog else 0.5)
        end = time.monotonic() + 120  # bad files left: quarantined after --timeout
        while sum(r[0] == "quarantined" for r in rows(out).values()) < len(bad):
            if time.monotonic() > end:
                break
            time.sleep(0.5)
        observe()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=300)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        log.close()
    seconds = time.monotonic() - started
    final = rows(out)
    status = json.loads((out / "status.json").read_text())
    good = [f"mic_{i:05d}.mrc" for i in range(args.micrographs)]
    lost = [n for n in good if final.get(n, ("missing",))[0] != "done"]
    missing = [m for m in done_at if not Path(m).exists()]
    unquarantined = [n for n in bad if final.get(n, ("missing",))[0] != "quarantined"]
    redone = [m for m, stamp in done_at.items() if Path(m).exists() and stamp != (
        os.stat(m).st_ino, os.stat(m).st_mtime_ns)]  # fmt: skip
    star = read_star(out / "micrographs_denoised.star")["micrographs"]["_rlnMicrographName"]
    counts = {s: sum(r[0] == s for r in final.values()) for s in ("done", "quarantined", "failed")}
    consistent = status["state"] == "stopped" and all(status[k] == v for k, v in counts.items())
    samples = [rss for life in lives for rss in life]
    quarter = max(1, len(samples) // 4)
    first, last = np.mean(samples[:quarter]), np.mean(samples[-quarter:])
    longest = max(lives, key=len)
    life_quarter = max(1, len(longest) // 4)
    life_first, life_last = np.mean(longest[:life_quarter]), np.mean(longest[-life_quarter:])
    table = [
        ["good micrographs fed / done", f"{args.micrographs} / {counts['done']}"],
        ["bad files fed / quarantined", f"{len(bad)} / {len(bad) - len(unquarantined)}"],
        ["kill -9 and restarts", str(kills)],
        ["lost (not done, or output missing)", str(len(lost) + len(missing))],
        ["done twice (output rewritten after done)", str(len(redone))],
        ["STAR rows / distinct", f"{len(star)} / {len(set(star))}"],
        ["failed rows at the end", str(counts["failed"])],
        ["status.json = journal after SIGTERM (exit code)", f"{consistent} ({code})"],
        [
            "RSS first / last quarter, whole run",
            f"{first:.0f} / {last:.0f} MiB ({100 * (last / first - 1):+.1f} %, "
            f"{len(samples)} samples)",
        ],
        [
            f"RSS first / last quarter, longest life ({len(longest)} samples)",
            f"{life_first:.0f} / {life_last:.0f} MiB ({100 * (life_last / life_first - 1):+.1f} %)",
        ],
        ["wall time", f"{seconds:.0f} s ({args.micrographs * 3600 / seconds:.0f} good/h)"],
    ]
    passed = (
        not lost
        and not missing
        and not unquarantined
        and not redone
        and len(star) == len(set(star)) == args.micrographs
        and consistent
        and code == 0
        and abs(last / first - 1) <= 0.05
    )
    body = (
        f"Input: {args.micrographs} simulated 256² float32 MRC at 4 Å/px ({args.pool} distinct, "
        f"copied under new names with temporary + rename, at most {args.backlog} waiting) and "
        f"{len(bad)} bad files ({', '.join(BAD_KINDS)}, in turn) at random; the daemon "
        f"(default model, eager, device {args.device}, all outputs) was killed with SIGKILL "
        f"every {args.kill_every} completions and restarted at once, then stopped with "
        f"SIGTERM. Result: **{'pass' if passed else 'FAIL'}**.\n\n"
        + markdown_table(["figure", "value"], table)
    )
    print(body)
    write_section("Soak", body, "python benchmarks/soak.py " + " ".join(sys.argv[1:]))
    if passed:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept for inspection: {root}")
        sys.exit(1)


if __name__ == "__main__":
    main()
