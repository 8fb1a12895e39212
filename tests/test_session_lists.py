"""The session's lists: done micrographs from the journal's records, the micrographs STAR."""

from __future__ import annotations

import json
from pathlib import Path

from streamdenoise.io import read_star
from streamdenoise.io.relion import OpticsSettings
from streamdenoise.outputs import OutputLayout, SessionLists
from streamdenoise.watch import Journal


def record_outputs(layout: OutputLayout, source: Path) -> dict[str, str]:
    """Write a denoised MRC's stand-in and its sidecar; their records as the journal keeps."""
    mrc, sidecar = layout.denoised_mrc(source), layout.sidecar(source)
    mrc.parent.mkdir(parents=True, exist_ok=True)
    mrc.write_bytes(b"")
    sidecar.write_text(json.dumps({"pixel_size_angstrom": 4.0}))
    return {"mrc": layout.record(mrc), "sidecar": layout.record(sidecar)}


def test_lists_hold_the_done_micrographs_whose_outputs_exist(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path / "in", tmp_path / "out")
    lists = SessionLists(layout, OpticsSettings())
    lists.write()  # nothing done: nothing written
    assert not layout.star.exists()
    with Journal(tmp_path / "journal.sqlite") as journal:
        for name in ("a.mrc", "b.mrc"):
            source = tmp_path / "in" / name
            journal.mark_processing(source, 1, 1, "h")
            outputs = record_outputs(layout, source) if name == "a.mrc" else {"mrc": "gone"}
            journal.mark_done(source, outputs, 1.0)
        lists.add_entries(journal.done_entries())
    assert len(lists) == 1  # b's outputs are missing
    lists.add(tmp_path / "in" / "c.mrc", record_outputs(layout, tmp_path / "in" / "c.mrc"))
    lists.add(tmp_path / "in" / "a.mrc", record_outputs(layout, tmp_path / "in" / "a.mrc"))
    assert len(lists) == 2  # a again replaces a
    lists.write()
    names = read_star(layout.star)["micrographs"]["_rlnMicrographName"]
    assert [Path(name).name for name in names] == ["a.mrc", "c.mrc"]
