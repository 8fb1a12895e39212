"""The HTML session report from a real journal and sidecars."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from streamdenoise.io.png import encode_png
from streamdenoise.outputs import OutputLayout, write_micrograph_outputs
from streamdenoise.report import write_report
from streamdenoise.watch import Journal


def test_report_plots_statistics_and_embeds_thumbnails(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        for i, verdict in enumerate(["ready", "marginal", "not ready"]):
            source = tmp_path / f"mic_{i}.mrc"
            sidecar = tmp_path / f"mic_{i}.json"
            thumbnail = tmp_path / f"mic_{i}.png"
            sidecar.write_text(
                json.dumps(
                    {"readiness": {"verdict": verdict, "candidates": 10 * i, "cnr": 3.0 + i}}
                )
            )
            thumbnail.write_bytes(encode_png(np.zeros((8, 8), np.uint8)))
            journal.mark_processing(source, 1, 1, "h")
            journal.mark_done(source, {"sidecar": str(sidecar), "thumbnail": str(thumbnail)}, 2.0)
    path = write_report(tmp_path)
    text = path.read_text()
    assert "3 micrographs denoised" in text and "1 ready" in text and "1 not ready" in text
    assert text.count("<svg") == 3  # candidates, CNR and latency have data
    assert text.count("no data") == 5  # density, empty, background structure, carbon, ice do not
    assert text.count("data:image/png;base64,") == 3
    assert "#c62828" in text  # a not-ready point is drawn red


def test_report_still_counts_after_the_output_folder_is_moved(tmp_path: Path) -> None:
    watch, out = tmp_path / "in", tmp_path / "session" / "out"
    layout = OutputLayout(watch, out)
    out.mkdir(parents=True)
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    with Journal(layout.journal) as journal:
        for i in range(3):
            source = watch / f"mic_{i}.mrc"
            outputs = write_micrograph_outputs(
                layout, source, image, image, 4.0, {"readiness": {"verdict": "ready"}}, zarr=False
            )
            assert not any(Path(path).is_absolute() for path in outputs.values())
            journal.mark_processing(source, 1, 1, "h")
            journal.mark_done(source, outputs, 2.0)
    moved = tmp_path / "elsewhere"
    shutil.move(out, moved)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("streamdenoise")), "report", str(moved)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    text = (moved / "report.html").read_text()
    assert "3 micrographs denoised: 3 ready" in text
    assert text.count("data:image/png;base64,") == 3  # thumbnails found in the new place
