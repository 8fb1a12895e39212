"""Real-data benchmark: does denoising help picking on real micrographs?

    python benchmarks/real_data.py APOFERRITIN_DIR [--epu EPU_DIR] [--topaz-python PY]
        [--model MODEL] [--candidate MODEL ...] [--adapt-steps 300] [--guided]
        [--micrographs 19] [--set noisy|averaged]

APOFERRITIN_DIR: the folder `cryo-EM Dataset` of the AutoCryoPicker repository (how to get
it: ../shared/data/apoferritin-empiar10146/README.md); the truth (hand-labelled centres,
`<name>.csv`) is read from `--truth` (default: that README's folder). Nineteen real
EMPIAR-10146 micrographs at 1.5 Å/px, apoferritin D = 120 Å: by default the PNGs
"without averaging" (noise ~98 % of their variance at 4 Å/px); `--set averaged` takes the
same fields "after averaging" instead, which hold their own noise at a higher
signal-to-noise ratio (measured and said in their section). Each micrograph is binned
(Fourier crop) to the model's working pixel size (4 Å/px) and every method is judged there:

- raw (binned), Gaussian blur σ = 6 Å, Topaz-Denoise `unet` (with --topaz-python, on the
  binned micrographs), the default model exactly as `streamdenoise denoise` runs it (and
  with the do-no-harm guard off, to show what the guard does), candidate models given with
  --candidate (with and without the guard), and the model adapted to the session
  (`streamdenoise.model.training.adapt` on the 19 micrographs, noisy only, no truth:
  blind-spot loss, swapped in only when the held-out picking criterion beats the resident
  model and no denoising), with --guided also target-guided by a hollow-sphere map of
  60/40 Å radii (what apoferritin is close to); every model also with the guard off;
- metrics per micrograph, averaged: average precision and best F1 of the project's fixed
  picker (`stats.picker`, difference of Gaussians at D) and of the data README's LoG picker
  (σ = 0.4·D/√2, suppression within D/2), picks matched within D/2; detection ROC AUC of
  each detector at true centres against background points; the do-no-harm guard's verdict;
  the truth-free picking criterion ρ of `stats.criterion` (what adaptation's swap rule uses)
  and its rank correlation with AP across methods.

EPU_DIR (optional): real EPU micrographs without truth (the two in the mrcfile 1.5.4 source
archive's tests/test_data: `pip download --no-deps --no-binary :all: mrcfile==1.5.4`). For
each: the residual-vs-structure correlation (raw − denoised against denoised, both
high-passed at D/2 with a nominal D = 150 Å) and the low-frequency background fraction.

Montages raw | Gaussian | Topaz | ours go to benchmarks/real_data/*.png; the tables to the
"Real data" section of benchmarks/RESULTS.md. Reading the PNG micrographs needs Pillow
(`pip install -e ".[benchmarks]"`).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from quality import topaz_denoise
from results import markdown_table, write_section

from streamdenoise.io import read_mrc
from streamdenoise.io.png import side_by_side
from streamdenoise.model.guidance import TemplateSet, TemplateSpec, load_templates
from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.model.pipeline import DenoiseSettings, denoise_image
from streamdenoise.model.training import adapt, prepare_image, session_criterion
from streamdenoise.physics.binning import bin_to_pixel_size
from streamdenoise.physics.density import Scatterers, scatterers_from_map
from streamdenoise.physics.shapes import hollow_shell
from streamdenoise.stats.criterion import response_correlation
from streamdenoise.stats.filters import gaussian_blur, gaussian_transfer
from streamdenoise.stats.ground_truth import (
    match_picks,
    picking_score,
)
from streamdenoise.stats.guard import residual_structure_correlation
from streamdenoise.stats.measures import (
    low_frequency_fraction,
    roc_auc,
)
from streamdenoise.stats.noise import estimate_noise_spectrum, mad_std, radial_band_index
from streamdenoise.stats.picker import blob_response, pick_peaks

HERE = Path(__file__).parent
DEFAULT_TRUTH = HERE.parent.parent / "shared" / "data" / "apoferritin-empiar10146"
MONTAGES = HERE / "real_data"
APOFERRITIN_PIXEL_SIZE = 1.5  # Å/px of the PNGs (see the truth folder's README)
APOFERRITIN_DIAMETER = 120.0  # Å
EPU_DIAMETER = 150.0  # Å, nominal (no truth): the scale of the high-pass and LF cut
GAUSSIAN_SIGMA = 6.0  # Å
APOFERRITIN_SETS = {
    "noisy": ("Apoferritin_cryo-EM_Dataset_without_averaging", ""),
    "averaged": ("Apoferritin_cryo-EM_Dataset_after_averaging_EMAN2", "_avg"),
}
"""Set name → (subfolder of `cryo-EM Dataset`, suffix of the PNG names after <name>)."""
ADAPT_CROP = 128  # px, the adaptation crops and the guidance templates' box
METRICS = ("DoG AP", "DoG F1", "DoG AUC", "LoG AP", "LoG F1", "LoG AUC")


@dataclass(frozen=True)
class RealMicrograph:
    """A real micrograph (H, W) float32 at `pixel_size` Å/px and its true particle centres
    (N, 2) as (x, y) pixels of that image (empty without truth)."""

    name: str
    image: np.ndarray
    pixel_size: float
    truth: np.ndarray


def load_apoferritin(
    folder: Path, truth_folder: Path, count: int, which: str = "noisy"
) -> list[RealMicrograph]:
    """The labelled apoferritin micrographs of set `which` (`APOFERRITIN_SETS`): PNGs from
    `folder`'s subfolder of that set (or `folder` itself), centres from
    `truth_folder/<name>.csv` (the same fields in both sets)."""
    from PIL import Image

    subfolder, suffix = APOFERRITIN_SETS[which]
    images = folder / subfolder if (folder / subfolder).is_dir() else folder
    micrographs = []
    for table in sorted(truth_folder.glob("*.csv"))[:count]:
        name = table.name.removesuffix(".csv")
        path = images / f"{name}{suffix}.png"
        if not path.is_file():
            raise SystemExit(f"{path}: missing (see {truth_folder / 'README.md'})")
        with open(table, newline="") as handle:
            truth = np.array([[float(r["x"]), float(r["y"])] for r in csv.DictReader(handle)])
        image = np.asarray(Image.open(path), dtype=np.float32)
        micrographs.append(RealMicrograph(name, image, APOFERRITIN_PIXEL_SIZE, truth))
    if not micrographs:
        raise SystemExit(f"no truth tables (*.csv) in {truth_folder}")
    return micrographs


def load_epu(folder: Path) -> list[RealMicrograph]:
    """Every MRC in `folder`, as float32, with the header's pixel size."""
    micrographs = []
    for path in sorted(folder.glob("*.mrc")):
        micrograph = read_mrc(path)
        micrographs.append(
            RealMicrograph(
                path.stem,
                np.asarray(micrograph.data, dtype=np.float32),
                float(micrograph.pixel_size),
                np.zeros((0, 2)),
            )
        )
    return micrographs


def log_response(image: np.ndarray, diameter: float, factor: float = 0.4) -> np.ndarray:
    """The data README's detector: scale-normalised Laplacian of Gaussian, σ = factor·D/√2
    (D in pixels; the README's factor is 0.4), positive at dark blobs; (H, W) float64 in
    units of its robust std."""
    sigma = factor * diameter / math.sqrt(2)
    data = np.asarray(image, dtype=np.float64)
    fy = np.fft.fftfreq(data.shape[0])[:, None]
    fx = np.fft.rfftfreq(data.shape[1])[None, :]
    # σ²∇² of the blur: positive at a dark blob (a minimum of the image).
    transfer = -4 * math.pi**2 * sigma**2 * (fx**2 + fy**2) * gaussian_transfer(data.shape, sigma)
    response = np.fft.irfft2(np.fft.rfft2(data - data.mean()) * transfer, s=data.shape)
    return (response - np.median(response)) / max(mad_std(response), 1e-12)


def detector_scores(
    response: np.ndarray, truth: np.ndarray, diameter: float, suppression: float
) -> dict[str, float]:
    """AP, best F1 and detection AUC of one detector response (H, W) against the truth
    (N, 2) pixels, for particles of `diameter` pixels."""
    picks, _ = pick_peaks(
        response, diameter, min_distance=suppression, max_picks=4 * max(len(truth), 1)
    )
    score = picking_score(match_picks(picks, truth, 0.5 * diameter), len(truth))
    points = np.clip(np.round(truth).astype(int), 0, np.array(response.shape[::-1]) - 1)
    positive = response[points[:, 1], points[:, 0]]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : response.shape[0], 0 : response.shape[1]]
    # Background points: farther than D/2 from every true centre.
    distance = np.full(response.shape, np.inf)
    for x, y in truth:
        distance = np.minimum(distance, (xx - x) ** 2 + (yy - y) ** 2)
    free = np.argwhere(distance > (0.5 * diameter) ** 2)
    chosen = free[rng.choice(len(free), size=min(2000, len(free)), replace=False)]
    negative = response[chosen[:, 0], chosen[:, 1]]
    return {"AP": score.average_precision, "F1": score.f1, "AUC": roc_auc(positive, negative)}


def picking_metrics(image: np.ndarray, truth: np.ndarray, diameter: float) -> dict[str, float]:
    """Both pickers' AP, best F1 and AUC on `image` (H, W) with truth (N, 2) px, D px."""
    project = detector_scores(blob_response(image, diameter), truth, diameter, 0.8 * diameter)
    log = detector_scores(log_response(image, diameter), truth, diameter, 0.5 * diameter)
    return {f"DoG {k}": v for k, v in project.items()} | {f"LoG {k}": v for k, v in log.items()}


Method = Callable[[list[RealMicrograph]], tuple[list[np.ndarray], list[str]]]


def binned(micrograph: RealMicrograph, working: float) -> np.ndarray:
    """The micrograph Fourier-binned to `working` Å/px, float32."""
    return bin_to_pixel_size(micrograph.image, micrograph.pixel_size, working)[0]


def model_method(loaded, settings: DenoiseSettings) -> Method:
    """The model as `streamdenoise denoise` runs it: each output with its guard verdict."""

    def run(micrographs: list[RealMicrograph]) -> tuple[list[np.ndarray], list[str]]:
        outputs, verdicts = [], []
        for m in micrographs:
            denoised, _ = denoise_image(
                m.image, m.pixel_size, loaded.model, loaded.pixel_size, settings
            )
            outputs.append(denoised.image)
            verdicts.append(denoised.guard.summary() if denoised.guard else "")
        return outputs, verdicts

    return run


def timed(method: Method, micrographs: list[RealMicrograph]):
    """(outputs, notes, seconds per micrograph)."""
    start = time.perf_counter()
    outputs, notes = method(micrographs)
    return outputs, notes, (time.perf_counter() - start) / len(micrographs)


def montage(panels: list[np.ndarray], size: int) -> bytes:
    """PNG of the top-left `size`² of each panel side by side, 8 px gaps."""
    return side_by_side([p[:size, :size] for p in panels], gap=8)


def run_methods(
    micrographs: list[RealMicrograph], methods: dict[str, Method]
) -> dict[str, tuple[list[np.ndarray], list[str], float]]:
    """Every method's binned outputs, notes and seconds per micrograph."""
    results = {}
    for label, method in methods.items():
        results[label] = timed(method, micrographs)
        print(f"  {label}: {results[label][2]:.2f} s per micrograph", flush=True)
    return results


def baseline_methods(working: float, topaz_python: str | None) -> dict[str, Method]:
    """Raw, Gaussian σ = 6 Å and (with a topaz-em Python) Topaz-Denoise unet."""

    def raw(ms):
        return [binned(m, working) for m in ms], [""] * len(ms)

    def gaussian(ms):
        blurred = [
            gaussian_blur(binned(m, working), GAUSSIAN_SIGMA / working).astype(np.float32)
            for m in ms
        ]
        return blurred, [""] * len(ms)

    methods: dict[str, Method] = {"raw": raw, f"Gaussian σ = {GAUSSIAN_SIGMA:g} Å": gaussian}
    if topaz_python:

        def topaz(ms):
            outputs, _ = topaz_denoise([binned(m, working) for m in ms], topaz_python)
            return outputs, [""] * len(ms)

        methods["Topaz-Denoise unet"] = topaz
    return methods


APOFERRITIN_SHELL = (60.0, 40.0)
"""Outer and inner radius (Å) of the hollow sphere that stands for a user's apoferritin
reference (apoferritin is close to one: ../shared/data/apoferritin-empiar10146/README.md)."""


def apoferritin_reference() -> Scatterers:
    """A hollow sphere of `APOFERRITIN_SHELL` radii, the reference a facility would have
    for apoferritin."""
    outer, inner = APOFERRITIN_SHELL
    volume = hollow_shell(outer, inner, 1.5)
    return scatterers_from_map(volume, 1.5, f"hollow sphere {outer:.0f}/{inner:.0f} Å")


def apoferritin_templates(working: float) -> TemplateSet:
    """Guidance templates from `apoferritin_reference`, at the working pixel size, boxed
    like the adaptation crops."""
    spec = TemplateSpec(pixel_size=working, box=ADAPT_CROP)
    return load_templates(apoferritin_reference(), spec)


def adapted_model(loaded, micrographs: list[RealMicrograph], steps: int, templates):
    """Adapt the model to the micrographs (noisy only; with `templates`, target-guided):
    the adapted candidate, whether the swap rule takes it (its held-out criterion beats
    the resident model and no denoising), and a note with the criteria and the time."""
    noise_unit = bool(getattr(loaded.model, "noise_unit_input", False))
    diameter = APOFERRITIN_DIAMETER / loaded.pixel_size
    start = time.perf_counter()
    session = [
        prepare_image(m.image, m.pixel_size, loaded.pixel_size, noise_unit=noise_unit)
        for m in micrographs
    ]
    result = adapt(
        loaded.model, session, diameter=diameter, steps=steps, crop=ADAPT_CROP, templates=templates
    )
    seconds = time.perf_counter() - start
    verdict = (
        "swapped in"
        if result.improved
        else "not swapped in: watch and train --init keep the resident model"
    )
    note = (
        f"{steps} blind-spot steps on {len(session)} micrographs in {seconds:.0f} s; held-out "
        f"criterion ρ: no denoising {result.criterion_input:.4f}, resident "
        f"{result.criterion_before:.4f}, adapted {result.criterion_after:.4f} ({verdict})."
    )
    return replace(loaded, model=result.model), result.improved, note


def criterion(micrographs: list[RealMicrograph], working: float, denoiser) -> float:
    """Mean truth-free picking criterion ρ (`stats.criterion`) over the micrographs binned
    to `working` Å/px: `denoiser` a model (live, guard off), None (the input itself) or
    a function (H, W) → (H, W)."""
    diameter = APOFERRITIN_DIAMETER / working
    images = [prepare_image(m.image, m.pixel_size, working) for m in micrographs]
    if denoiser is None or isinstance(denoiser, torch.nn.Module):
        return session_criterion(denoiser, images, diameter)
    return float(
        np.mean(
            [
                response_correlation(
                    denoiser, image.noisy, estimate_noise_spectrum(image.noisy), diameter
                )
                for image in images
            ]
        )
    )


def noise_share(micrographs: list[RealMicrograph], working: float) -> float:
    """Mean share of the noise in the variance of the micrographs binned to `working` Å/px
    (σ̂² of `estimate_noise_spectrum` over the variance), 0–1."""
    shares = []
    for m in micrographs:
        noisy = prepare_image(m.image, m.pixel_size, working).noisy
        shares.append(estimate_noise_spectrum(noisy).pixel_sigma ** 2 / float(np.var(noisy)))
    return float(np.mean(shares))


def band_coherence(a: np.ndarray, b: np.ndarray, bands: int = 8) -> np.ndarray:
    """Spectral coherence |Σ A·B*| / √(Σ|A|²·Σ|B|²) of two (H, W) images per radial band
    (0 = lowest frequencies): 1 in every band where one is a shift-invariant filtering of
    the other; the shared signal's share where each holds noise of its own. (bands,)"""
    spectrum_a = np.fft.rfft2(a - a.mean())
    spectrum_b = np.fft.rfft2(b - b.mean())
    index = radial_band_index(a.shape, bands)
    valid = index >= 0

    def per_band(values: np.ndarray) -> np.ndarray:
        return np.bincount(index[valid], values[valid], minlength=bands)

    cross = per_band((spectrum_a * np.conj(spectrum_b)).real) + 1j * per_band(
        (spectrum_a * np.conj(spectrum_b)).imag
    )
    power_a, power_b = per_band(np.abs(spectrum_a) ** 2), per_band(np.abs(spectrum_b) ** 2)
    return np.abs(cross) / np.sqrt(power_a * power_b)


def sets_relation(args, averaged: list[RealMicrograph], working: float) -> str:
    """How the averaged set relates to the noisy one, measured on the same fields: noise
    shares and spectral coherence (1 if the averaged set were a filtered copy)."""
    noisy = load_apoferritin(args.apoferritin, args.truth, len(averaged), "noisy")
    coherence = np.mean(
        [
            band_coherence(binned(a, working), binned(n, working))
            for a, n in zip(averaged, noisy, strict=True)
        ],
        axis=0,
    )
    return (
        f"The averaged set against the noisy one (same fields, {len(noisy)} pairs, at "
        f"{working:g} Å/px): noise {noise_share(averaged, working):.0%} of the variance "
        f"against {noise_share(noisy, working):.0%}; spectral coherence "
        f"{', '.join(f'{c:.2f}' for c in coherence)} in 8 bands from the lowest frequencies "
        "to Nyquist. A filtered copy (EMAN2 smoothing of the noisy images) would give 1 in "
        "every band: the averaged images hold noise of their own, at a higher "
        "signal-to-noise ratio. The flat floor near Nyquist, where little signal is left, is "
        "what one frame shares with an average of N frames, 1/√N (0.16 for N = 40): the "
        "noisy set looks like single movie frames, the averaged set like the frame sums "
        "that motion correction writes and a live denoiser receives. They are judged here "
        "as micrographs in their own right, with the same labelled centres."
    )


def apoferritin_section(args, loaded, settings: DenoiseSettings) -> str:
    working = loaded.pixel_size
    micrographs = load_apoferritin(args.apoferritin, args.truth, args.micrographs, args.set)
    diameter = APOFERRITIN_DIAMETER / working
    print(
        f"apoferritin ({args.set}): {len(micrographs)} micrographs, D = {diameter:.1f} px",
        flush=True,
    )
    methods = baseline_methods(working, args.topaz_python)
    # The criterion of each method (guard off: the guard is not a smooth function).
    denoisers = {
        "raw": None,
        f"Gaussian σ = {GAUSSIAN_SIGMA:g} Å": lambda y: gaussian_blur(y, GAUSSIAN_SIGMA / working),
    }
    models = {"streamdenoise default model": loaded}
    for path in args.candidate:
        models[f"candidate {path.name}"] = load_model(path)
    notes = []
    if args.adapt_steps > 0:
        kinds = [("session-adapted", None, "Session adaptation")]
        if args.guided:
            kinds.append(
                (
                    "session-adapted with guidance",
                    apoferritin_templates(working),
                    "Guided adaptation (target guidance from a hollow sphere of 60/40 Å "
                    "radii, the user's reference a facility would have for apoferritin)",
                )
            )
        for label, templates, title in kinds:
            candidate, swapped, note = adapted_model(
                loaded, micrographs, args.adapt_steps, templates
            )
            models[f"{label} candidate ({'swapped in' if swapped else 'rejected'})"] = candidate
            notes.append(f"{title}: {note}")
    for label, model in models.items():
        methods[label] = model_method(model, settings)
        methods[f"{label}, guard off"] = model_method(model, replace(settings, guard=False))
        denoisers[f"{label}, guard off"] = model.model
    results = run_methods(micrographs, methods)
    rows, agreement = [], []
    for label, (outputs, verdicts, seconds) in results.items():
        scores = [
            picking_metrics(out, m.truth * out.shape[1] / m.image.shape[1], diameter)
            for out, m in zip(outputs, micrographs, strict=True)
        ]
        mean = {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}
        rho = criterion(micrographs, working, denoisers[label]) if label in denoisers else None
        if rho is not None:
            agreement.append((mean["LoG AP"], mean["DoG AP"], rho))
        guarded = sum("fallback" in v for v in verdicts)
        rows.append(
            [label]
            + [f"{mean[k]:.3f}" for k in METRICS]
            + ["–" if rho is None else f"{rho:.3f}"]
            + [f"{seconds:.2f}", f"{guarded}/{len(verdicts)}" if any(verdicts) else "–"]
        )
        print("  " + " | ".join(map(str, rows[-1])), flush=True)
    log_ap, dog_ap, rhos = (np.array(column) for column in zip(*agreement, strict=True))
    notes.append(
        f"Criterion ρ against picking AP over the {len(rhos)} methods that have it: Spearman "
        f"{rank_correlation(rhos, log_ap):.2f} (LoG AP), {rank_correlation(rhos, dog_ap):.2f} "
        "(DoG AP)."
    )
    if args.set == "averaged":
        notes.append(sets_relation(args, micrographs, working))
    name = "apoferritin.png" if args.set == "noisy" else f"apoferritin_{args.set}.png"
    if not args.no_write:
        MONTAGES.mkdir(exist_ok=True)
        panels = [results[label][0][0] for label in results]
        (MONTAGES / name).write_bytes(montage(panels, 450))
    header = ["method", *METRICS, "criterion ρ", "s / micrograph", "guard fallbacks"]
    subfolder = APOFERRITIN_SETS[args.set][0]
    return (
        f"### Apoferritin (EMPIAR-10146, `{subfolder}`, {len(micrographs)} micrographs, "
        f"{sum(len(m.truth) for m in micrographs)} labelled particles, judged at "
        f"{working:g} Å/px, D = {diameter:.0f} px)\n\n"
        + markdown_table(header, rows)
        + "\n\n"
        + "\n".join(f"- {n}" for n in notes)
        + f"\n\nMontage (first micrograph; {' | '.join(results)}): "
        f"[real_data/{name}](real_data/{name})\n"
    )


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two 1-D arrays (no ties expected)."""
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def epu_section(args, loaded, settings: DenoiseSettings) -> str:
    working = loaded.pixel_size
    micrographs = load_epu(args.epu)
    diameter = EPU_DIAMETER / working
    methods = baseline_methods(working, args.topaz_python)
    methods["streamdenoise default model"] = model_method(loaded, settings)
    print(f"EPU: {len(micrographs)} micrographs", flush=True)
    results = run_methods(micrographs, methods)
    raw = results["raw"][0]
    rows = []
    for label, (outputs, verdicts, seconds) in results.items():
        for i, m in enumerate(micrographs):
            correlation = (
                residual_structure_correlation(raw[i], outputs[i], diameter)
                if label != "raw"
                else float("nan")
            )
            rows.append(
                [
                    m.name,
                    label,
                    "–" if label == "raw" else f"{correlation:.3f}",
                    f"{low_frequency_fraction(outputs[i], diameter):.3f}",
                    f"{seconds:.2f}",
                    verdicts[i] or "–",
                ]
            )
    links = []
    for i, m in enumerate(micrographs):
        if not args.no_write:
            MONTAGES.mkdir(exist_ok=True)
            panels = [results[label][0][i] for label in results]
            (MONTAGES / f"epu_{m.name}.png").write_bytes(montage(panels, 512))
        links.append(f"[real_data/epu_{m.name}.png](real_data/epu_{m.name}.png)")
    header = ["micrograph", "method", "residual–structure r", "LF fraction", "s", "guard"]
    return (
        f"### EPU micrographs (no truth; judged at {working:g} Å/px, nominal D = "
        f"{EPU_DIAMETER:g} Å)\n\n"
        + markdown_table(header, rows)
        + f"\n\nMontages ({' | '.join(results)}): "
        + ", ".join(links)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("apoferritin", type=Path, help="AutoCryoPicker's 'cryo-EM Dataset'.")
    parser.add_argument("--truth", type=Path, default=DEFAULT_TRUTH)
    parser.add_argument("--epu", type=Path, default=None, help="Folder of EPU MRC files.")
    parser.add_argument("--topaz-python", default=None, help="Python of a topaz-em venv.")
    parser.add_argument("--model", type=Path, default=None, help="Default: the shipped model.")
    parser.add_argument("--adapt-steps", type=int, default=300)
    parser.add_argument(
        "--guided",
        action="store_true",
        help="Also adapt with target guidance from a hollow-sphere map (60/40 Å radii).",
    )
    parser.add_argument(
        "--candidate",
        type=Path,
        action="append",
        default=[],
        help="Another model file to measure beside the default (repeatable).",
    )
    parser.add_argument("--micrographs", type=int, default=19)
    parser.add_argument(
        "--set",
        choices=sorted(APOFERRITIN_SETS),
        default="noisy",
        help="Which apoferritin PNGs: 'noisy' (without averaging, the default; section "
        "'Real data') or 'averaged' (after averaging, EMAN2; section 'Real data, averaged "
        "apoferritin'). The same fields and labelled centres.",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="Print only (no RESULTS.md, no montages)."
    )
    args = parser.parse_args()
    loaded = load_model(args.model or default_model_path())
    settings = DenoiseSettings()
    sections = [apoferritin_section(args, loaded, settings)]
    if args.epu:
        sections.append(epu_section(args, loaded, settings))
    data = (
        "Data: the apoferritin PNGs from GitHub jianlin-cheng/AutoCryoPicker (`cryo-EM "
        "Dataset/`) with the hand-labelled centres of "
        "`../shared/data/apoferritin-empiar10146/` (1.5 Å/px, D = 120 Å); the EPU "
        "micrographs from the mrcfile 1.5.4 source archive (`tests/test_data/`). Every method "
        "is judged on the micrographs binned to the model's 4 Å/px; AP and F1 are means over "
        "micrographs, AUC of the detector response at true centres against background "
        "points; times include binning. No truth was used to train or tune anything here.\n\n"
    )
    body = data + "\n".join(sections)
    print(body)
    if not args.no_write:
        title = "Real data" if args.set == "noisy" else "Real data, averaged apoferritin"
        write_section(title, body)


if __name__ == "__main__":
    main()
