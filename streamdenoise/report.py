"""A session report for the logbook: one self-contained HTML file (inline SVG plots of the
session's statistics over time, verdict counts, example thumbnails)."""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from pathlib import Path

from streamdenoise.io import atomic_write_text
from streamdenoise.watch import Journal

SERIES = (
    ("candidates", "candidate particles per micrograph"),
    ("density_per_um2", "candidates per µm²"),
    ("cnr", "particle CNR (denoised)"),
    ("empty_fraction", "empty fraction of the hole"),
    ("background_structure", "background structure (× noise; thick ice when few particles)"),
    ("carbon_fraction", "carbon / contamination fraction"),
    ("ice_texture", "ice texture (Å²/e⁻; grows with the ice thickness)"),
)
VERDICT_COLOURS = {"ready": "#2e7d32", "marginal": "#f9a825", "not ready": "#c62828"}


def load_session(out_dir: Path, state_dir: Path | None = None) -> list[dict]:
    """Sidecar records of the done micrographs, in completion order, each with "name",
    "latency", "verdict" and "thumbnail" (its path). The journal is in `state_dir`
    (default `out_dir`) and names outputs relative to `out_dir`."""
    records = []
    with Journal((state_dir or out_dir) / "journal.sqlite") as journal:
        for entry in journal.done_entries():
            outputs = entry.outputs or {}
            if "sidecar" not in outputs:
                continue
            try:
                record = json.loads((out_dir / outputs["sidecar"]).read_text())
            except (OSError, ValueError):
                continue
            record["name"] = entry.path.name
            record["latency"] = entry.latency
            thumbnail = outputs.get("thumbnail")
            record["thumbnail"] = None if thumbnail is None else str(out_dir / thumbnail)
            records.append(record)
    return records


def svg_series(values: list[float | None], verdicts: list[str | None], title: str) -> str:
    """A small line plot (SVG) of `values` over micrograph number, points coloured by
    verdict; None/NaN values are skipped."""
    width, height, pad = 560, 160, 36
    points = [(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    if not points:
        return f"<p>{html.escape(title)}: no data</p>"
    low = min(v for _, v in points)
    high = max(v for _, v in points)
    span = high - low or 1.0
    count = max(len(values) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return pad + (width - 2 * pad) * i / count, height - pad - (height - 2 * pad) * (
            v - low
        ) / span

    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in points))
    dots = []
    for i, v in points:
        x, y = xy(i, v)
        colour = VERDICT_COLOURS.get(verdicts[i] or "", "#555")
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
    return (
        f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{pad}" y="14" font-size="12">{html.escape(title)}</text>'
        f'<text x="2" y="{pad}" font-size="10">{high:.3g}</text>'
        f'<text x="2" y="{height - pad}" font-size="10">{low:.3g}</text>'
        f'<polyline fill="none" stroke="#1565c0" stroke-width="1" points="{line}"/>{"".join(dots)}'
        f'<text x="{width / 2:.0f}" y="{height - 6}" font-size="10">micrograph number</text></svg>'
    )


def render_report(records: list[dict], title: str, examples: int = 4) -> str:
    """The report's HTML for the given sidecar records."""
    readiness = [r.get("readiness") or {} for r in records]
    verdicts = [r.get("verdict") for r in readiness]
    counts = Counter(v or "no statistics" for v in verdicts)
    plots = [svg_series([r.get(key) for r in readiness], verdicts, label) for key, label in SERIES]
    plots.append(svg_series([r.get("latency") for r in records], verdicts, "latency (s)"))
    chosen = records[:: max(1, len(records) // examples)][:examples]
    thumbnails = []
    for record in chosen:
        path = record.get("thumbnail")
        if path and Path(path).is_file():
            data = base64.b64encode(Path(path).read_bytes()).decode()
            verdict = (record.get("readiness") or {}).get("verdict", "")
            thumbnails.append(
                f'<figure><img width="512" src="data:image/png;base64,{data}"/>'
                f"<figcaption>{html.escape(record['name'])}: {html.escape(str(verdict))}"
                f" (raw | denoised)</figcaption></figure>"
            )
    summary = ", ".join(f"{count} {html.escape(name)}" for name, count in counts.most_common())
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body style='font-family:sans-serif'>"
        f"<h1>{html.escape(title)}</h1><p>{len(records)} micrographs denoised: {summary}.</p>"
        "<h2>Statistics over the session</h2>"
        + "".join(f"<div>{p}</div>" for p in plots)
        + "<h2>Examples</h2>"
        + "".join(thumbnails)
        + "</body></html>"
    )


def write_report(out_dir: Path, state_dir: Path | None = None, out: Path | None = None) -> Path:
    """Write OUT/report.html (or `out`) for the session whose outputs are in `out_dir`
    (journal in `state_dir`, default `out_dir`)."""
    records = load_session(out_dir, state_dir)
    target = out or out_dir / "report.html"
    atomic_write_text(target, render_report(records, f"streamdenoise session {out_dir}"))
    return target
