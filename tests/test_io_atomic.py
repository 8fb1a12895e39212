"""Atomic output: readers see the old file or the whole new one, never a temporary."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdenoise.io import atomic_output, atomic_write_bytes, atomic_write_text


def test_success_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_output(target) as temporary:
        assert temporary.parent == tmp_path
        assert temporary.name.startswith(".out.txt.") and temporary.name.endswith(".tmp")
        temporary.write_text("new")
        assert target.read_text() == "old"  # untouched until the block ends
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with pytest.raises(FileNotFoundError), atomic_output(tmp_path / "never.txt"):
        pass  # nothing written: nothing to rename
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_temporaries_are_unique(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "a") as first, atomic_output(tmp_path / "a") as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "a").read_text() == "1"  # the last to finish wins
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_write_helpers_create_parents(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "x" / "y" / "b.bin", b"\x00\x01")
    assert (tmp_path / "x" / "y" / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "t.txt", "Å/px\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "Å/px\n"


def test_temporaries_of_a_killed_writer_are_removed_at_the_next_start(tmp_path: Path) -> None:
    from streamdenoise.io.omezarr import _temporary
    from streamdenoise.outputs import OutputLayout, remove_temporaries

    layout = OutputLayout(tmp_path / "in", tmp_path / "out")
    folder = layout.denoised_mrc(tmp_path / "in" / "grid" / "a.mrc").parent
    folder.mkdir(parents=True)
    with atomic_output(folder / "a.mrc") as temporary:
        temporary.write_text("whole")
        stale = temporary.with_name(temporary.name.replace(".a.mrc.", ".b.mrc."))
        stale.write_text("half")  # as a kill -9 inside such a block leaves it
    group = _temporary(layout.zarr_root, "grid__a", "tmp")
    group.mkdir(parents=True)
    (group / "zarr.json").write_text("{}")
    keep = [folder / ".notes", folder / "a.mrc", layout.out_dir / ".hidden.tmp"]
    for path in keep[::2]:
        path.write_text("mine")
    assert remove_temporaries(layout) == 2
    assert not stale.exists() and not group.exists()
    assert all(path.exists() for path in keep)
