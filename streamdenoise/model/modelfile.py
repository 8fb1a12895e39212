"""The versioned model file: a trained `ScoreUNet` plus what is needed to use it correctly.

A model file is a `torch.save`d dict, loaded with `weights_only=True` (no arbitrary code):

    {"format": "streamdenoise-model", "version": 1,
     "unet": UNetConfig.to_dict(), "state_dict": {name: tensor},
     "normalization": {"clip": 5.0, "scale": 5.0},
     "pixel_size": Å/px of the micrographs it was trained on,
     "provenance": JSON-able dict (data, steps, losses, code version …),
     "extra": dict of JSON-able values or tensors,
     "created": ISO-8601 UTC time, "torch_version": str}

Version policy: a reader accepts every version up to its own `VERSION` and refuses newer
ones with a clear message. Every problem with a file raises `ModelFileError(path, reason)`.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from streamdenoise.errors import ModelFileError
from streamdenoise.model.inference import NORM_CLIP, NORM_SCALE
from streamdenoise.model.unet import ScoreUNet, UNetConfig

FORMAT = "streamdenoise-model"
VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
NORMALIZATION = {"clip": NORM_CLIP, "scale": NORM_SCALE}
DEFAULT_MODEL = "default_model.pt"
"""The model shipped in streamdenoise/data, trained by benchmarks/train_default_model.py."""


def default_model_path() -> Path:
    """Path of the shipped default model (raises ModelFileError if the install lacks it)."""
    from importlib import resources

    path = Path(str(resources.files("streamdenoise.data") / DEFAULT_MODEL))
    if not path.is_file():
        raise ModelFileError(
            path, "the default model is missing from this install; give one with --model"
        )
    return path


@dataclass(frozen=True)
class LoadedModel:
    """A model read from a model file.

    Attributes:
        path: the file it came from.
        model: the network, on the requested device, in eval mode.
        pixel_size: Å/px of the micrographs it was trained for.
        provenance: the JSON-able provenance dict saved with it.
        metadata: every other top-level entry of the file (format, version, unet,
            normalization, extra, created, torch_version); the weights are not repeated.
    """

    path: Path
    model: ScoreUNet
    pixel_size: float
    provenance: dict[str, Any]
    metadata: dict[str, Any]


def _check_jsonable(value: Any, where: str, allow_tensors: bool = False) -> None:
    """Raise TypeError unless value is None/bool/int/float/str or lists/str-keyed dicts of them."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where}: non-finite float {value!r} is not JSON")
        return
    if allow_tensors and isinstance(value, torch.Tensor):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_jsonable(item, f"{where}[{i}]", allow_tensors)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a str")
            _check_jsonable(item, f"{where}[{key!r}]", allow_tensors)
        return
    raise TypeError(
        f"{where}: {type(value).__name__} is not JSON-able (use str/int/float/bool/list/dict)"
    )


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a hidden temp file in the same directory, fsync, then os.replace."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_model(
    path: str | Path,
    model: nn.Module,
    *,
    pixel_size: float,
    provenance: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model file atomically (readers never see a partial file).

    Args:
        path: destination; its directory must exist.
        model: a `ScoreUNet` (a `torch.compile`d one is unwrapped).
        pixel_size: Å/px of the micrographs it was trained on, > 0.
        provenance: JSON-able dict (str/int/float/bool/None, lists, str-keyed dicts).
        extra: optional dict of JSON-able values or tensors.

    Returns:
        The path written.

    Raises:
        TypeError: model is not a ScoreUNet, or provenance/extra is not JSON-able.
        ValueError: pixel_size is not a positive finite number.
        OSError: the file cannot be written.
    """
    net = getattr(model, "_orig_mod", model)
    if not isinstance(net, ScoreUNet):
        raise TypeError(f"save_model needs a ScoreUNet, got {type(model).__name__}")
    if isinstance(pixel_size, bool) or not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of Å/px, got {pixel_size!r}")
    if not isinstance(provenance, dict):
        raise TypeError(f"provenance must be a dict, got {type(provenance).__name__}")
    _check_jsonable(provenance, "provenance")
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict, got {type(extra).__name__}")
    _check_jsonable(extra, "extra", allow_tensors=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "unet": net.config.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        "normalization": dict(NORMALIZATION),
        "pixel_size": float(pixel_size),
        "provenance": provenance,
        "extra": extra,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
    }
    out = Path(path)
    _atomic_torch_save(payload, out)
    return out


def _brief(exc: BaseException, limit: int = 200) -> str:
    """Type and first sentence of an exception, on one line."""
    text = " ".join(str(exc).split()).split(". ")[0]
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}"


def _validated(path: Path, data: Any) -> tuple[UNetConfig, dict[str, torch.Tensor], float]:
    """Check the top-level structure of a loaded model dict; return config, weights, pixel size."""
    if not isinstance(data, dict):
        raise ModelFileError(path, f"holds a {type(data).__name__}, not a streamdenoise model")
    if data.get("format") != FORMAT:
        raise ModelFileError(path, f"format is {data.get('format')!r}, expected {FORMAT!r}")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(path, f"invalid format version {version!r}")
    if version > VERSION:
        raise ModelFileError(
            path,
            f"format version {version} is newer than this streamdenoise reads ({VERSION}); "
            "upgrade streamdenoise",
        )
    if data.get("normalization") != NORMALIZATION:
        raise ModelFileError(
            path,
            f"normalization {data.get('normalization')!r} differs from the supported "
            f"{NORMALIZATION!r}",
        )
    pixel_size = data.get("pixel_size")
    if (
        not isinstance(pixel_size, int | float)
        or isinstance(pixel_size, bool)
        or not (math.isfinite(pixel_size) and pixel_size > 0)
    ):
        raise ModelFileError(path, f"invalid pixel_size {pixel_size!r}")
    if not isinstance(data.get("provenance"), dict):
        raise ModelFileError(path, "missing or invalid provenance")
    state = data.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(path, "missing or invalid state_dict")
    unet = data.get("unet")
    if not isinstance(unet, dict):
        raise ModelFileError(path, "missing or invalid unet configuration")
    try:
        config = UNetConfig.from_dict(unet)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"invalid unet configuration ({_brief(exc)})") from exc
    return config, state, float(pixel_size)


def model_digest(model_path: Path) -> str:
    """16 hex digits of the sha256 of a model file's bytes."""
    return hashlib.sha256(Path(model_path).read_bytes()).hexdigest()[:16]


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Read a model file written by `save_model`.

    Args:
        path: the model file.
        device: where to put the network.

    Returns:
        `LoadedModel` with the network in eval mode on `device`.

    Raises:
        ModelFileError: missing file, not a torch file, truncated or corrupt, wrong
            "format", newer version, unsupported normalisation, or weights that do not
            match the stored configuration. The message names the file.
    """
    p = Path(path)
    if not p.exists():
        raise ModelFileError(p, "no such file")
    if not p.is_file():
        raise ModelFileError(p, "not a regular file")
    try:
        with open(p, "rb") as fh:
            magic = fh.read(len(_ZIP_MAGIC))
    except OSError as exc:
        raise ModelFileError(p, f"cannot be read ({_brief(exc)})") from exc
    if magic != _ZIP_MAGIC:
        raise ModelFileError(p, "not a model file (not a torch zip archive)")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(
            p, "holds objects other than tensors and plain values, or is corrupt; not loaded"
        ) from exc
    except Exception as exc:  # any other failure to read the archive: damaged file
        raise ModelFileError(p, f"corrupt or truncated ({_brief(exc)})") from exc
    config, state, pixel_size = _validated(p, data)
    model = ScoreUNet(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(
            p, f"weights do not match the stored configuration ({_brief(exc)})"
        ) from exc
    metadata = {k: v for k, v in data.items() if k != "state_dict"}
    return LoadedModel(
        path=p,
        model=model.to(device).eval(),
        pixel_size=pixel_size,
        provenance=data["provenance"],
        metadata=metadata,
    )
