"""Why no denoiser lifts picking on the noisy apoferritin set: probes of what limits it.

    python benchmarks/real_data_probes.py APOFERRITIN_DIR [--micrographs 19]

APOFERRITIN_DIR as for benchmarks/real_data.py (the noisy set, "without averaging": noise
~99 % of the variance at 4 Å/px, like single movie frames). Every probe is judged exactly as
real_data.py judges methods: binned to 4 Å/px, the data README's LoG picker at D = 120 Å
(σ = 0.4·D/√2), AP and detection AUC per micrograph, averaged. Probes:

- the picker's own scale on the raw micrographs (σ = f·D/√2 for f = 0.25 … 0.5): how much
  AP lies in the picker rather than in the image;
- a per-micrograph Wiener filter S/(S + N) (radial power spectrum less the fitted noise
  spectrum of `stats.noise`): the best linear denoiser for pixel error, truth-free;
- CTF Wiener deconvolution (what Warp and IsoNet show for picking): defocus fitted per
  micrograph from the Thon rings of the 1.5 Å/px image (`physics.ctf.estimate_defocus`;
  300 kV, Cs 2.7 mm, 7 % amplitude contrast), SSNR(k) = 10^(3s)·exp(−100 k Å) for
  strengths s;
- the shipped model's Tweedie step scaled by λ (output y + λ(x̂ − y), guard off), with the
  truth-free criterion ρ that session adaptation's swap rule uses;
- matched filters: with a hollow sphere of 60/40 Å radii (the reference a facility would
  have for apoferritin) imaged through each micrograph's fitted CTF (no truth), and, as a
  ceiling that uses the truth (not a method), with the rotationally averaged mean
  particle of these micrographs;
- a simulated stand-in for the set: hollow spheres of 60/40 Å at the labelled density,
  the fitted defoci, at the dose whose simulated noise share (`real_data.noise_share`'s
  estimate) matches the set's; with its truth, the raw field, the shipped model, the
  Wiener filter of the simulation's own signal and noise spectra (an oracle: it uses the
  clean fields), and the shipped model fine-tuned on other stand-in fields with their
  clean images (`--stand-in-steps`), each judged on the stand-in and on the real set.

No probe's parameter was tuned on the AP it is reported with; the lists above are the whole
grid. Results go to the "Real data, probes" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from real_data import (
    APOFERRITIN_DIAMETER,
    DEFAULT_TRUTH,
    RealMicrograph,
    apoferritin_reference,
    binned,
    detector_scores,
    load_apoferritin,
    log_response,
    noise_share,
)
from results import markdown_table, write_section

from streamdenoise.model.inference import live_denoise
from streamdenoise.model.modelfile import default_model_path, load_model
from streamdenoise.model.training import TrainConfig, live_denoiser, prepare_image, train
from streamdenoise.physics.ctf import ctf_2d, estimate_defocus, frequency_grid
from streamdenoise.physics.simulator import MicrographParams, simulate_micrograph
from streamdenoise.stats.criterion import response_correlation
from streamdenoise.stats.ground_truth import match_picks
from streamdenoise.stats.noise import (
    NoiseSpectrum,
    estimate_noise_spectrum,
    interpolation_power,
    mad_std,
)
from streamdenoise.stats.picker import blob_response, template_band
from streamdenoise.stats.readiness import CANDIDATE_SEPARATION, find_candidates

WORKING = 4.0  # Å/px, the model's and real_data.py's
LOG_FACTORS = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
DECONVOLUTION_STRENGTHS = (0.3, 0.5, 1.0)
STEP_SCALES = (0.1, 0.25, 0.5, 1.0)
CS_MM, VOLTAGE_KV = 2.7, 300.0
SHELL_RADII = (60.0, 40.0)  # Å, apoferritin's outer and inner radii (the data README)
REFERENCE_SEPARATION = 0.8
"""Candidates of the reference's matched filter stand this many diameters apart at least
(`pick_peaks`' own default; at the readiness DoG's 0.5 the template's side lobes count),
and the cut shadows both ways (`find_candidates(symmetric=True)`): one-sided, the side
lobes round every noise peak hide the decoys near it (a simulated 6MSM field of 60
particles got 382 candidates)."""
ENVELOPE_B = 100.0  # Å², the CTF envelope of the reference's image (the simulator's default)
RADIAL_BINS = 64
STAND_IN_SIDE = 448  # px at WORKING Å/px, each simulated stand-in field
STAND_IN_DOSES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # e⁻/Å², the calibration grid
STAND_IN_DETECTOR = 1.5  # Å, the real set's pixel (sets the simulated MTF)
STAND_IN_FIELDS = (4, 12)  # stand-in fields judged, and fields the fine-tuning sees
CALIBRATION_SEEDS = 3  # stand-in fields per dose whose noise shares are averaged

Filter = Callable[[np.ndarray, RealMicrograph], np.ndarray]


def frequency_radius(shape: tuple[int, int], pixel_size: float = 1.0) -> np.ndarray:
    """|k| of each rfft2 coefficient of an (H, W) image, 1/pixel_size units."""
    return np.hypot(*frequency_grid(shape, pixel_size))


def radial_profile(values: np.ndarray, radius: np.ndarray, edge: float, bins: int):
    """Mean of `values` in `bins` equal rings of `radius` up to `edge`: (ring index of
    each coefficient, profile (bins,))."""
    ring = np.minimum((radius / edge * bins).astype(int), bins - 1)
    total = np.bincount(ring.ravel(), values.ravel(), bins)
    return ring, total / np.maximum(np.bincount(ring.ravel(), None, bins), 1)


def wiener(image: np.ndarray, noise: NoiseSpectrum) -> np.ndarray:
    """Per-micrograph Wiener filter of `image` (H, W): S/(S + N) per ring, S the ring's
    power less the fitted noise's, N the noise's (both per pixel)."""
    data = np.asarray(image, np.float64) - image.mean()
    spectrum = np.fft.rfft2(data)
    fx, fy = frequency_grid(data.shape, 1.0)  # cycles per pixel
    noise_power = noise.white_variance * interpolation_power(fy, noise.interpolation)
    noise_power = noise_power * interpolation_power(fx, noise.interpolation)
    radius = np.hypot(fx, fy)
    ring, power = radial_profile(np.abs(spectrum) ** 2 / data.size, radius, 0.5, RADIAL_BINS)
    _, noise_ring = radial_profile(
        np.broadcast_to(noise_power, radius.shape), radius, 0.5, RADIAL_BINS
    )
    gain = np.clip(power - noise_ring, 0, None) / np.maximum(power, 1e-30)
    return np.fft.irfft2(spectrum * gain[ring], s=data.shape)


def deconvolve(image: np.ndarray, defocus: float, strength: float) -> np.ndarray:
    """CTF Wiener deconvolution of `image` (H, W) at `WORKING` Å/px, particles kept dark:
    −C/(C² + 1/SSNR), SSNR(k) = 10^(3·strength)·exp(−100 k Å)."""
    data = np.asarray(image, np.float64) - image.mean()
    ctf = ctf_2d(data.shape, WORKING, defocus_u=defocus, voltage_kv=VOLTAGE_KV, cs_mm=CS_MM)
    ssnr = 10 ** (3 * strength) * np.exp(-100 * frequency_radius(data.shape, WORKING))
    return np.fft.irfft2(np.fft.rfft2(data) * (-ctf / (ctf**2 + 1 / ssnr)), s=data.shape)


def mean_particle(images: list[np.ndarray], truths: list[np.ndarray], half: int) -> np.ndarray:
    """The rotationally averaged mean particle (2·half)² at the true centres: a template
    that uses the truth (its matched filter is a ceiling, not a method)."""
    total, count = np.zeros((2 * half, 2 * half)), 0
    for image, truth in zip(images, truths, strict=True):
        data = image - image.mean()
        for x, y in np.round(truth).astype(int):
            if half <= y < image.shape[0] - half and half <= x < image.shape[1] - half:
                total += data[y - half : y + half, x - half : x + half]
                count += 1
    yy, xx = np.mgrid[-half:half, -half:half]
    ring = np.hypot(xx, yy).astype(int)
    profile = np.bincount(ring.ravel(), (total / count).ravel()) / np.bincount(ring.ravel())
    return profile[ring]


def hollow_sphere_image(half: int, defocus: float) -> np.ndarray:
    """A hollow sphere of `SHELL_RADII` (Å) projected and imaged through the CTF at
    `defocus` (Å), envelope `ENVELOPE_B`, at `WORKING` Å/px, (2·half)²: the reference a
    facility would have for apoferritin, as the micrograph shows it (no truth)."""
    outer, inner = SHELL_RADII
    yy, xx = np.mgrid[-half:half, -half:half] * WORKING
    radius = np.hypot(xx, yy)
    thickness = 2 * np.sqrt(np.clip(outer**2 - radius**2, 0, None))
    thickness -= 2 * np.sqrt(np.clip(inner**2 - radius**2, 0, None))
    ctf = ctf_2d(
        thickness.shape,
        WORKING,
        defocus_u=defocus,
        voltage_kv=VOLTAGE_KV,
        cs_mm=CS_MM,
        b_factor=ENVELOPE_B,
    )
    return np.fft.irfft2(np.fft.rfft2(thickness) * ctf, s=thickness.shape)


def scores(responses: list[np.ndarray], truths: list[np.ndarray], diameter: float):
    """Mean LoG AP and AUC over micrographs of detector `responses` (robust units)."""
    rows = [
        detector_scores(r, t, diameter, 0.5 * diameter)
        for r, t in zip(responses, truths, strict=True)
    ]
    return float(np.mean([r["AP"] for r in rows])), float(np.mean([r["AUC"] for r in rows]))


def robust(response: np.ndarray) -> np.ndarray:
    """`response` less its median over its robust std (as `log_response` scales its own)."""
    centre = float(np.median(response))
    return (response - centre) / max(mad_std(response, centre), 1e-12)


def counted(
    response: np.ndarray, truth: np.ndarray, diameter: float, separation: float, symmetric: bool
) -> tuple[int, float, float]:
    """(candidates, precision, recall) of the readiness statistics' cut (`find_candidates`:
    FDR against decoys, D/2 border left out) on a detector `response` in robust units."""
    excluded = np.zeros(response.shape, dtype=bool)
    border = max(int(diameter / 2), 1)
    excluded[:border], excluded[-border:], excluded[:, :border], excluded[:, -border:] = (True,) * 4
    coordinates, *_ = find_candidates(response, diameter, excluded, separation, symmetric)
    hits = match_picks(coordinates, truth, 0.5 * diameter)
    precision = float(hits.mean()) if len(hits) else math.nan
    return len(coordinates), precision, float(hits.sum() / len(truth))


def fit(micrograph: RealMicrograph) -> float:
    """The micrograph's defocus (Å) from its Thon rings, at its own pixel size."""
    return estimate_defocus(
        micrograph.image, micrograph.pixel_size, voltage_kv=VOLTAGE_KV, cs_mm=CS_MM
    )[0]


def count_rows(folder: Path, truth_folder: Path, count: int, diameter: float) -> list[list]:
    """Per set: the readiness cut's count with the DoG at D and with the reference's
    matched filter (each micrograph's own fitted CTF), against the labelled counts."""
    rows: list[list] = []
    for which in ("noisy", "averaged"):
        micrographs = load_apoferritin(folder, truth_folder, count, which)
        images = [binned(m, WORKING) for m in micrographs]
        truths = [m.truth * m.pixel_size / WORKING for m in micrographs]
        half = int(0.8 * diameter)
        detectors = {
            "DoG at D (the readiness picker)": (
                [blob_response(i, diameter) for i in images],
                CANDIDATE_SEPARATION,
                False,
            ),
            "hollow-sphere reference through the fitted CTF": (
                [
                    robust(template_band(i, hollow_sphere_image(half, fit(m))))
                    for i, m in zip(images, micrographs, strict=True)
                ],
                REFERENCE_SEPARATION,
                True,
            ),
        }
        for label, (responses, separation, symmetric) in detectors.items():
            results = [
                counted(r, t, diameter, separation, symmetric)
                for r, t in zip(responses, truths, strict=True)
            ]
            counts = [n for n, _, _ in results]
            errors = [abs(n - len(t)) / len(t) for n, t in zip(counts, truths, strict=True)]
            labelled = [len(t) for t in truths]
            rows.append(
                [
                    which,
                    label,
                    f"{min(counts)}–{max(counts)}",
                    f"{min(labelled)}–{max(labelled)}",
                    f"{np.median(errors):.2f}",
                    f"{np.nanmean([p for _, p, _ in results]):.2f}",
                    f"{np.mean([r for _, _, r in results]):.2f}",
                ]
            )
            print(rows[-1], flush=True)
    return rows


def stand_in_field(dose: float, defocus: float, particles: int, seed: int):
    """One simulated stand-in field (`STAND_IN_SIDE`² at `WORKING` Å/px) of apoferritin's
    hollow sphere: `SimulatedMicrograph` (noisy, clean, coordinates in pixels)."""
    params = MicrographParams(
        shape=(STAND_IN_SIDE, STAND_IN_SIDE),
        pixel_size=WORKING,
        detector_pixel_size=STAND_IN_DETECTOR,
        seed=seed,
        dose=dose,
        defocus_u=defocus,
        defocus_v=defocus,
        particles=particles,
    )
    return simulate_micrograph(apoferritin_reference(), params)


def matched_dose(share: float, defocus: float, particles: int) -> tuple[float, list[float]]:
    """The dose (e⁻/Å²) whose stand-in field has noise `share` of its variance (log-linear
    between the `STAND_IN_DOSES` grid's measured shares, each the mean over
    `CALIBRATION_SEEDS` fields), and those shares."""
    shares = []
    for dose in STAND_IN_DOSES:
        measured = []
        for seed in range(CALIBRATION_SEEDS):
            field = stand_in_field(dose, defocus, particles, seed=1 + seed)
            noisy = prepare_image(field.noisy, WORKING, WORKING).noisy
            measured.append(estimate_noise_spectrum(noisy).pixel_sigma ** 2 / float(np.var(noisy)))
        shares.append(float(np.mean(measured)))
    order = np.argsort(shares)  # shares fall as the dose rises
    log_dose = np.interp(share, np.asarray(shares)[order], np.log(STAND_IN_DOSES)[order])
    return float(np.exp(log_dose)), shares


def radial_wiener_gain(fields: list) -> np.ndarray:
    """S/(S + N) per ring (`RADIAL_BINS` rings up to Nyquist) from stand-in fields' clean
    images and noise: the simulation's own Wiener filter (an oracle)."""
    radius = frequency_radius((STAND_IN_SIDE, STAND_IN_SIDE))
    signal = np.zeros(RADIAL_BINS)
    noise = np.zeros(RADIAL_BINS)
    for field in fields:
        clean = np.abs(np.fft.rfft2(field.clean - field.clean.mean())) ** 2
        residual = field.noisy - field.clean
        noise_power = np.abs(np.fft.rfft2(residual - residual.mean())) ** 2
        signal += radial_profile(clean, radius, 0.5, RADIAL_BINS)[1]
        noise += radial_profile(noise_power, radius, 0.5, RADIAL_BINS)[1]
    return signal / np.maximum(signal + noise, 1e-30)


def apply_radial(image: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """`image` (H, W) filtered by a radial `gain` (`RADIAL_BINS` rings up to Nyquist)."""
    data = np.asarray(image, np.float64) - image.mean()
    radius = frequency_radius(data.shape)
    ring, _ = radial_profile(np.zeros(radius.shape), radius, 0.5, RADIAL_BINS)
    return np.fft.irfft2(np.fft.rfft2(data) * gain[ring], s=data.shape)


def stand_in_rows(
    micrographs: list[RealMicrograph],
    images: list[np.ndarray],
    truths: list[np.ndarray],
    defoci: list[float],
    loaded,
    steps: int,
) -> tuple[list[list[object]], str]:
    """The simulated stand-in probe (module docstring): rows (method, LoG AP and AUC on the
    stand-in, LoG AP and AUC on the real set) and a note on how it was matched."""
    diameter = APOFERRITIN_DIAMETER / WORKING
    share = noise_share(micrographs, WORKING)
    area = np.mean([i.size for i in images])
    particles = round(np.mean([len(t) for t in truths]) * STAND_IN_SIDE**2 / area)
    dose, shares = matched_dose(share, float(np.median(defoci)), particles)
    judged, seen = STAND_IN_FIELDS
    fields = [
        stand_in_field(dose, defoci[i % len(defoci)], particles, seed=100 + i)
        for i in range(judged + seen)
    ]
    test, training = fields[:judged], fields[judged:]
    noise_unit = bool(getattr(loaded.model, "noise_unit_input", False))
    tuned = copy.deepcopy(loaded.model)
    config = TrainConfig(
        steps=steps, learning_rate=3e-4, validation_every=steps, checkpoint_every=steps
    )
    start = time.perf_counter()
    prepared = [
        prepare_image(f.noisy, WORKING, WORKING, f.clean, noise_unit=noise_unit) for f in training
    ]
    train(tuned, prepared, config)
    seconds = time.perf_counter() - start
    gain = radial_wiener_gain(training)
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "raw": np.asarray,
        "shipped model (guard off)": lambda y: live_denoise(y, loaded.model, guard=False),
        "Wiener filter of the simulation's own spectra (oracle)": lambda y: apply_radial(y, gain),
        f"shipped model fine-tuned on {seen} stand-in fields, clean targets": lambda y: (
            live_denoise(y, tuned.eval(), guard=False)
        ),
    }
    rows: list[list[object]] = []
    for label, method in methods.items():
        simulated = scores(
            [log_response(method(f.noisy), diameter) for f in test],
            [f.coordinates for f in test],
            diameter,
        )
        real = scores([log_response(method(i), diameter) for i in images], truths, diameter)
        rows.append([label, *(f"{v:.3f}" for v in (*simulated, *real))])
        print(rows[-1], flush=True)
    calibration = ", ".join(f"{d:g}: {v:.3f}" for d, v in zip(STAND_IN_DOSES, shares, strict=True))
    note = (
        f"Stand-in: {particles} hollow spheres (60/40 Å) per {STAND_IN_SIDE}² field at "
        f"{WORKING:g} Å/px (the labelled density), the fitted defoci in turn, "
        f"{dose:.2f} e⁻/Å² (noise share of the real set {share:.3f}; simulated shares by "
        f"dose, means of {CALIBRATION_SEEDS} fields, {calibration}); {judged} fields judged, "
        f"{seen} others for the fine-tuning "
        f"({steps} steps, clean-target loss, {seconds:.0f} s)."
    )
    return rows, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("apoferritin", type=Path, help="AutoCryoPicker's `cryo-EM Dataset`.")
    parser.add_argument("--truth", type=Path, default=DEFAULT_TRUTH)
    parser.add_argument("--micrographs", type=int, default=19)
    parser.add_argument(
        "--stand-in-steps",
        type=int,
        default=300,
        help="Fine-tuning steps of the shipped model on the simulated stand-in (0: skip the "
        "stand-in probe).",
    )
    args = parser.parse_args()
    micrographs = load_apoferritin(args.apoferritin, args.truth, args.micrographs, "noisy")
    diameter = APOFERRITIN_DIAMETER / WORKING
    images = [binned(m, WORKING) for m in micrographs]
    truths = [m.truth * m.pixel_size / WORKING for m in micrographs]
    rows: list[list[object]] = []

    def add(label: str, filtered: list[np.ndarray], criterion: str = "–") -> None:
        ap, auc = scores([log_response(f, diameter) for f in filtered], truths, diameter)
        rows.append([label, f"{ap:.3f}", f"{auc:.3f}", criterion])
        print(rows[-1], flush=True)

    for factor in LOG_FACTORS:
        responses = [log_response(i, diameter, factor) for i in images]
        ap, auc = scores(responses, truths, diameter)
        rows.append([f"raw, picker σ = {factor:g}·D/√2", f"{ap:.3f}", f"{auc:.3f}", "–"])
        print(rows[-1], flush=True)
    filtered = [wiener(i, estimate_noise_spectrum(i)) for i in images]
    add("Wiener filter (fitted noise spectrum)", filtered)
    fits = [
        estimate_defocus(m.image, m.pixel_size, voltage_kv=VOLTAGE_KV, cs_mm=CS_MM)
        for m in micrographs
    ]
    defoci = [d for d, _ in fits]
    for strength in DECONVOLUTION_STRENGTHS:
        add(
            f"CTF Wiener deconvolution, strength {strength:g}",
            [deconvolve(i, d, strength) for i, d in zip(images, defoci, strict=True)],
        )
    loaded = load_model(default_model_path())
    prepared = [prepare_image(m.image, m.pixel_size, WORKING).noisy for m in micrographs]
    noise = [estimate_noise_spectrum(p) for p in prepared]
    for scale in (0.0, *STEP_SCALES):
        outputs, criteria = [], []
        for image, spectrum in zip(prepared, noise, strict=True):
            model = live_denoiser(loaded.model, spectrum.pixel_sigma)

            def scaled(y: np.ndarray, model=model, scale=scale) -> np.ndarray:
                return y + scale * (model(y) - y) if scale else np.asarray(y)

            outputs.append(scaled(image))
            criteria.append(response_correlation(scaled, image, spectrum, diameter))
        label = "raw (normalised)" if scale == 0 else f"shipped model, Tweedie step × {scale:g}"
        add(label, outputs, f"{np.nanmean(criteria):.4f}")
    half = int(0.8 * diameter)
    templates = {
        "hollow-sphere reference (60/40 Å) through each micrograph's fitted CTF, matched filter": [
            hollow_sphere_image(half, d) for d in defoci
        ],
        "mean particle matched filter (uses the truth)": [mean_particle(images, truths, half)]
        * len(images),
    }
    for label, chosen in templates.items():
        responses = [robust(template_band(i, t)) for i, t in zip(images, chosen, strict=True)]
        ap, auc = scores(responses, truths, diameter)
        rows.append([label, f"{ap:.3f}", f"{auc:.3f}", "–"])
        print(rows[-1], flush=True)
    header = ["probe", "LoG AP", "LoG AUC", "criterion ρ"]
    fitted = ", ".join(f"{d / 1e4:.2f}" for d in defoci)
    body = (
        f"The noisy apoferritin set ({len(micrographs)} micrographs, 4 Å/px, D = "
        f'{diameter:.0f} px), judged as in "Real data". Fitted defocus per micrograph (µm): '
        f"{fitted}; fit correlation {min(c for _, c in fits):.2f}–{max(c for _, c in fits):.2f}."
        "\n\n" + markdown_table(header, rows)
    )
    if args.stand_in_steps > 0:
        stand_in, note = stand_in_rows(
            micrographs, images, truths, defoci, loaded, args.stand_in_steps
        )
        body += (
            "\n\nA simulated stand-in for the set, judged with its truth and on the real "
            f"set (LoG picker as above). {note}\n\n"
            + markdown_table(
                ["method", "stand-in LoG AP", "stand-in AUC", "real LoG AP", "real AUC"],
                stand_in,
            )
        )
    counts = count_rows(args.apoferritin, args.truth, args.micrographs, diameter)
    body += (
        "\n\nCounted as the readiness statistics count (`find_candidates`: the FDR cut "
        "against decoys, the D/2 border left out; for the reference peaks 0.8·D apart and "
        "shadowing both ways) on the binned micrographs (not denoised), with the "
        "readiness picker and with the reference's matched filter, against the labelled "
        "particles (median relative error; precision and recall matched within D/2):\n\n"
        + markdown_table(
            ["set", "detector", "candidates", "labelled", "count error", "precision", "recall"],
            counts,
        )
    )
    print(body)
    command = "python benchmarks/real_data_probes.py '<AutoCryoPicker>/cryo-EM Dataset'"
    if args.micrographs != 19:
        command += f" --micrographs {args.micrographs}"
    if args.stand_in_steps != 300:
        command += f" --stand-in-steps {args.stand_in_steps}"
    write_section("Real data, probes", body, command)


if __name__ == "__main__":
    main()
