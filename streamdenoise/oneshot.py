"""What `streamdenoise denoise` writes and where: the flat form (OUT/<stem><suffix>.mrc
alone) or, with `--mirror`, the layout and outputs of `watch` and `batch` (the inputs'
folders below their common folder, sidecars, picks, thumbnails, OME-Zarr, STAR lists).
Each micrograph goes through `processing.process_micrograph`, as in `batch`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from streamdenoise.config import OUTPUT_KEYS, Settings
from streamdenoise.errors import SettingsError
from streamdenoise.io.writable import writable_folder
from streamdenoise.outputs import OutputLayout, SessionLists, check_targets, common_folder
from streamdenoise.processing import OutputOptions


@dataclass(frozen=True)
class OneShot:
    """Where and what one `denoise` run writes: `layout`, `options`, and the session's
    STAR lists (None in the flat form)."""

    layout: OutputLayout
    options: OutputOptions
    lists: SessionLists | None

    def make_places(self, settings: Settings) -> None:
        """Create the output folder (mirrored: also read an `optics_from` STAR); after the
        model has loaded, so that a bad model file leaves nothing behind. ValueError (or
        FileProblem) naming the problem."""
        if self.lists is None:
            writable_folder(self.layout.out_dir, "--out")
        else:
            settings.check_places()

    def done(self, source: Path, outputs: dict[str, str]) -> None:
        """Record a denoised micrograph (its outputs relative to OUT) for the lists."""
        if self.lists is not None:
            self.lists.add(source, outputs)

    def finish(self) -> None:
        """Write the session's STAR lists and OME-Zarr series (mirrored layout only)."""
        if self.lists is not None:
            self.lists.write()


def plan_denoise(
    settings: Settings, files: Sequence[Path], given: Mapping[str, Any], model_label: str
) -> OneShot:
    """The outputs of `denoise` for `files`, checked before any work (nothing is created:
    `OneShot.make_places`): SettingsError for a flag of the mirrored layout given without
    --mirror; ValueError naming the files when a denoised MRC would overwrite an input or
    another's output."""
    out, suffix = settings.output_dir, settings.outputs.suffix
    if not settings.outputs.mirror:
        flags = [key for key in OUTPUT_KEYS if given.get(key) is not None]
        if flags:
            named = ", ".join("--" + key.replace("_", "-") for key in flags)
            raise SettingsError(f"{named}: only with --mirror (--flat writes the MRCs alone)")
        layout = OutputLayout(out, out, suffix, folders=False)
        check_targets(files, layout)
        options = replace(
            settings.output_options(model_label), zarr=False, thumbnails=False,
            diameter_angstrom=None, sidecar=False,
        )  # fmt: skip
        return OneShot(layout, options, None)
    layout = OutputLayout(common_folder(files), out, suffix)
    check_targets(files, layout)
    options = settings.output_options(model_label)
    return OneShot(layout, options, SessionLists(layout, settings.outputs.optics()))
