"""Tests of candidate discovery: real directories, real inotify and polling observers."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import FakeClock
from watchdog.events import FileCreatedEvent

from streamdenoise.watch.discovery import (
    Discovery,
    _CandidateHandler,
    filesystem_type,
    is_ignored,
    is_network_filesystem,
    matches,
)

DEADLINE = 5.0  # seconds: the longest any wait in these tests may take


def write(path: Path, data: bytes = b"\0" * 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def collect_until(d: Discovery, done: Callable[[set[Path]], bool]) -> set[Path]:
    """Accumulate candidates until ``done(found)`` or the deadline; returns what was found."""
    found: set[Path] = set()
    deadline = time.monotonic() + DEADLINE
    while True:
        found |= d.poll_candidates()
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(0.0)


@pytest.fixture
def make(clock: FakeClock) -> Iterator[Callable[..., Discovery]]:
    """Build started Discovery objects that never rescan on their own (the clock is frozen)
    and are stopped at teardown."""
    made: list[Discovery] = []

    def factory(root: Path, **kwargs: object) -> Discovery:
        options: dict[str, object] = {
            "polling": False,
            "rescan_interval": 30.0,
            "poll_interval": 0.05,
            "clock": clock,
        }
        options.update(kwargs)
        d = Discovery(root, **options)  # type: ignore[arg-type]
        made.append(d)
        d.start()
        return d

    yield factory
    for d in made:
        d.stop()


def test_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / ".hidden-parent" / "session"  # a hidden directory above root is fine
    assert not is_ignored(root / "a.mrc", root)
    assert not is_ignored(root / "grid1" / "a.mrc", root)
    for name in [".a.mrc", ".cache/a.mrc", "sub/.tmp/a.mrc", "a.mrc.tmp", "a.mrc.part", "a.PART"]:
        assert is_ignored(root / name, root), name
    for name in ["a.mrc.partial", "a.crdownload", ".a.mrc.swp", "a.mrc~", "a.mrc.filepart"]:
        assert is_ignored(root / name, root), name


def test_matches() -> None:
    include = ("*.mrc", "*.tif", "*.tiff")
    assert matches(Path("/d/mic_001.mrc"), include)
    assert matches(Path("/d/MIC_001.MRC"), include)
    assert matches(Path("/d/movie.TIFF"), include)
    assert not matches(Path("/d/mic.mrcs"), include)
    assert not matches(Path("/d/notes.txt"), include)
    assert not matches(Path("/d/mic_thumb.mrc"), include, exclude=("*_THUMB*",))


MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
server:/export /mnt/data nfs4 rw,vers=4.2 0 0
//nas/em /mnt/data2 cifs rw 0 0
/dev/vdb /mnt/data/local ext4 rw 0 0
user@host:/srv /mnt/with\\040space fuse.sshfs rw 0 0
garbage
"""


def test_filesystem_type_longest_mount_prefix() -> None:
    assert filesystem_type("/mnt/data/session/a.mrc", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/data2/a.mrc", MOUNTS) == "cifs"  # not a prefix of /mnt/data
    assert filesystem_type("/mnt/data/local/a.mrc", MOUNTS) == "ext4"
    assert filesystem_type("/mnt/with space/a.mrc", MOUNTS) == "fuse.sshfs"
    assert filesystem_type("/home/user", MOUNTS) == "ext4"
    assert filesystem_type("/home/user", "") is None


def test_is_network_filesystem(tmp_path: Path) -> None:
    assert is_network_filesystem(Path("/mnt/data/x"), MOUNTS)
    assert is_network_filesystem(Path("/mnt/data2"), MOUNTS)
    assert is_network_filesystem(Path("/mnt/with space"), MOUNTS)
    assert not is_network_filesystem(Path("/mnt/data/local/x"), MOUNTS)
    assert not is_network_filesystem(Path("/"))
    assert not is_network_filesystem(tmp_path)


def test_files_present_at_start_are_found(tmp_path: Path, make: Callable[..., Discovery]) -> None:
    a = write(tmp_path / "a.mrc")
    b = write(tmp_path / "grid1" / "sq2" / "b.TIF")
    write(tmp_path / "notes.txt")
    write(tmp_path / ".hidden.mrc")
    write(tmp_path / ".trash" / "c.mrc")
    write(tmp_path / "d.mrc.part")
    d = make(tmp_path)
    assert d.poll_candidates() == {a, b}
    assert d.poll_candidates() == set()  # handed out once; no rescan before the interval


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_new_file_is_found_through_events(
    tmp_path: Path, make: Callable[..., Discovery], polling: bool
) -> None:
    d = make(tmp_path, polling=polling)
    assert d.poll_candidates() == set()
    new = write(tmp_path / "sub" / "new.mrc")
    assert new in collect_until(d, lambda found: new in found)


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_ignored_names_are_not_reported(
    tmp_path: Path, make: Callable[..., Discovery], polling: bool
) -> None:
    d = make(tmp_path, polling=polling)
    for name in [".a.mrc", ".cache/b.mrc", "c.mrc.part", "d.mrc.tmp", "e.mrc~", "f.txt"]:
        write(tmp_path / name)
    sentinel = write(tmp_path / "z.mrc")
    assert collect_until(d, lambda found: sentinel in found) == {sentinel}


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_rename_into_place_is_a_new_file(
    tmp_path: Path, make: Callable[..., Discovery], polling: bool
) -> None:
    d = make(tmp_path, polling=polling)
    partial = write(tmp_path / ".x.mrc.part", b"\1" * 4096)
    final = tmp_path / "x.mrc"
    os.replace(partial, final)
    assert collect_until(d, lambda found: final in found) == {final}


def test_include_exclude_and_recursion(tmp_path: Path, make: Callable[..., Discovery]) -> None:
    top = write(tmp_path / "top.mrc")
    write(tmp_path / "top_thumb.mrc")
    write(tmp_path / "top.tif")
    nested = write(tmp_path / "grid" / "nested.MRC")
    options = {"include": ("*.mrc",), "exclude": ("*_thumb*",)}
    assert make(tmp_path, recursive=False, **options).poll_candidates() == {top}
    assert make(tmp_path, recursive=True, **options).poll_candidates() == {top, nested}


def test_non_recursive_ignores_new_nested_files(
    tmp_path: Path, make: Callable[..., Discovery]
) -> None:
    (tmp_path / "grid").mkdir()
    d = make(tmp_path, recursive=False)
    write(tmp_path / "grid" / "nested.mrc")
    top = write(tmp_path / "top.mrc")
    assert collect_until(d, lambda found: top in found) == {top}


def test_rescan_finds_files_whose_events_were_lost(
    tmp_path: Path, make: Callable[..., Discovery], clock: FakeClock
) -> None:
    d = make(tmp_path, rescan_interval=30.0)
    d.stop()  # the observer thread is gone: no more events
    assert not d.is_alive()
    lost = write(tmp_path / "lost.mrc")
    assert d.poll_candidates() == set()
    clock.now += 29.0
    assert d.poll_candidates() == set()
    clock.now += 1.0
    assert d.poll_candidates() == {lost}
    assert d.poll_candidates() == set()  # next rescan only after another interval
    clock.now += 30.0
    assert d.poll_candidates() == set()  # listed before: not handed out again


def test_rescans_hand_out_new_names_only(
    tmp_path: Path, make: Callable[..., Discovery], clock: FakeClock
) -> None:
    """A session of many files costs the daemon nothing per rescan: the names the previous
    scan listed are not candidates again (so they are not stat-ed or looked up); a name
    that disappears and comes back is."""
    session = [write(tmp_path / "grid" / f"mic_{i:04d}.mrc") for i in range(500)]
    d = make(tmp_path)
    d.stop()  # rescans only
    assert d.poll_candidates() == set(session)  # the first scan hands out everything
    clock.now += 30.0
    assert d.poll_candidates() == set()
    session[7].unlink()
    clock.now += 30.0
    assert d.poll_candidates() == set()
    write(session[7])
    new = write(tmp_path / "grid" / "mic_0500.mrc")
    clock.now += 30.0
    assert d.poll_candidates() == {session[7], new}


def test_skipped_folders_are_neither_walked_nor_reported(
    tmp_path: Path, make: Callable[..., Discovery], clock: FakeClock
) -> None:
    """The daemon's output folder inside the watched folder: its files (denoised MRCs that
    match the include globs) are not candidates, by rescan or by event."""
    out = tmp_path / "streamdenoise"
    write(out / "denoised" / "old.mrc")
    kept = write(tmp_path / "mic.mrc")
    d = make(tmp_path, skip=[out])
    assert d.poll_candidates() == {kept}
    written = write(out / "denoised" / "new.mrc")
    event = write(tmp_path / "event.mrc")
    found = collect_until(d, lambda found: event in found)
    assert event in found and written not in found
    clock.now += 30.0
    assert written not in d.poll_candidates()


def test_ensure_alive_restarts_a_stopped_observer(
    tmp_path: Path, make: Callable[..., Discovery], caplog: pytest.LogCaptureFixture
) -> None:
    d = make(tmp_path)
    assert d.is_alive()
    assert d.ensure_alive()
    d.stop()
    with caplog.at_level(logging.WARNING, logger="streamdenoise.watch"):
        assert d.ensure_alive()
    assert "restarting" in caplog.text
    assert d.is_alive()
    new = write(tmp_path / "after_restart.mrc")
    assert new in collect_until(d, lambda found: new in found)


def test_ensure_alive_after_the_mount_went_away(
    tmp_path: Path, make: Callable[..., Discovery], caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "session"
    root.mkdir()
    d = make(root, polling=True)
    root.rename(tmp_path / "elsewhere")  # the polling emitter stops itself on a missing root
    deadline = time.monotonic() + DEADLINE
    while d.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not d.is_alive()
    with caplog.at_level(logging.WARNING, logger="streamdenoise.watch"):
        assert not d.ensure_alive()  # root still missing: warns, keeps trying later
        assert not d.ensure_alive()
    assert caplog.text.count("cannot restart") == 1  # warned once, not on every call
    (tmp_path / "elsewhere").rename(root)
    assert d.ensure_alive()
    new = write(root / "back.mrc")
    assert new in collect_until(d, lambda found: new in found)


def test_event_handler_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    def accept(path: Path) -> bool:
        raise ValueError(f"{path} is not below the root")

    handler = _CandidateHandler(accept, lambda path: None)
    with caplog.at_level(logging.ERROR, logger="streamdenoise.watch"):
        handler.dispatch(FileCreatedEvent("/elsewhere/x.mrc"))
    assert "could not be handled" in caplog.text
