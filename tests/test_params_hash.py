"""The journal's parameter hash names everything that changes a micrograph's outputs, so a
restart with other statistics or output options redoes the micrographs (issue 13)."""

from __future__ import annotations

from dataclasses import replace

from streamdenoise.model.modelfile import default_model_path
from streamdenoise.model.pipeline import DenoiseSettings
from streamdenoise.processing import OutputOptions, processing_params_hash
from streamdenoise.stats.readiness import ReadinessThresholds


def test_statistics_and_output_options_change_the_hash() -> None:
    base = OutputOptions()

    def digest(options: OutputOptions, suffix: str = "") -> str:
        return processing_params_hash(
            default_model_path(), DenoiseSettings(), options, input_pixel_size=None, suffix=suffix
        )

    variants = [
        replace(base, diameter_angstrom=200.0),
        replace(base, diameter_angstrom=None),  # statistics off: no picks
        replace(base, thresholds=ReadinessThresholds(min_cnr=4.0)),
        replace(base, zarr=False),
        replace(base, thumbnails=False),
        replace(base, float16=True),
        replace(base, picks_frame="both"),
    ]
    hashes = {digest(base), digest(base, "_d"), *map(digest, variants)}
    assert len(hashes) == len(variants) + 2
    assert digest(replace(base, model_label="another name")) == digest(base)  # a label only


def test_an_estimated_diameter_hashes_as_estimated_whatever_its_value() -> None:
    """The daemon's estimate arrives after some micrographs are written (and may differ
    after a restart): its hash must not change with it, or those would be redone."""

    def digest(options: OutputOptions, estimated: bool) -> str:
        return processing_params_hash(
            default_model_path(),
            DenoiseSettings(),
            options,
            input_pixel_size=None,
            suffix="",
            estimated_diameter=estimated,
        )

    base = OutputOptions()
    estimated = digest(base, True)
    assert digest(replace(base, diameter_angstrom=118.0), True) == estimated
    assert digest(replace(base, diameter_source="estimated from 5 micrographs"), True) == estimated
    assert estimated != digest(base, False)
