"""The one runtime loader: device, model file, compile policy, warm-up and digest, for
`denoise`, `watch` and `batch` alike."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from streamdenoise.engine.batches import (
    compile_by_default,
    is_compiled,
    network_dtype,
    prepare_model,
)
from streamdenoise.engine.device import resolve_device
from streamdenoise.errors import DeviceError, StreamDenoiseError, one_line
from streamdenoise.model.modelfile import LoadedModel, default_model_path, load_model, model_digest

log = logging.getLogger("streamdenoise.runtime")
LOG_LIMIT = 4000
"""Characters of a model-stage error (e.g. a compiler's output) logged, once."""


def log_text(error: BaseException) -> str:
    """`error` for the log: its text cut to LOG_LIMIT characters (compilers say a lot)."""
    text = f"{type(error).__name__}: {error}"
    if len(text) <= LOG_LIMIT:
        return text
    return f"{text[:LOG_LIMIT]}… ({len(text) - LOG_LIMIT:,} more characters)"


@dataclass
class Runtime:
    """A model ready to serve: the device, the model file (absolute path, 16-hex-digit
    digest, its loaded contents: weights, pixel size in Å/px, provenance) and `network`,
    the model prepared for inference (eval, channels_last, compiled or eager), and `dtype`,
    the precision it runs in (`network_dtype`)."""

    device: torch.device
    model_path: Path
    digest: str
    loaded: LoadedModel
    network: nn.Module
    dtype: torch.dtype = torch.float32

    @property
    def label(self) -> str:
        """The device and precision, for the log and the dashboard: "cpu, bfloat16"."""
        return f"{self.device}, {str(self.dtype).removeprefix('torch.')}"

    @property
    def compiled(self) -> bool:
        """Whether `network` is torch.compiled."""
        return is_compiled(self.network)

    def swap(self, model: nn.Module) -> None:
        """Serve `model` (e.g. one adapted to the session) with the same compile policy."""
        self.network = prepare_model(model, self.device, compile_model=self.compiled)


def load_runtime(
    model: Path | None,
    device: str,
    *,
    compile_model: bool | None,
    dtype: torch.dtype | None = None,
    expected_digest: str | None = None,
) -> Runtime:
    """Resolve `device` ("auto", "cpu", "cuda[:N]"), load `model` (None: the shipped one)
    and prepare it. `compile_model` None compiles where this machine can and it pays for
    the network's `dtype` (`compile_by_default`; None: the device's choice); one-shot
    commands pass False (compiling costs more than it saves on a few micrographs).
    `expected_digest` (a batch worker's check) raises
    StreamDenoiseError when the file differs from the client's. Not warmed up: see
    `warm_up`."""
    torch_device = resolve_device(device)
    path = Path(os.path.abspath(model or default_model_path()))
    digest = model_digest(path)
    if expected_digest is not None and digest != expected_digest:
        raise StreamDenoiseError(f"{path} on this worker differs from the client's model file")
    loaded = load_model(path, device=torch_device)
    precision = network_dtype(torch_device, dtype)
    if compile_model is None:
        compile_model = compile_by_default(torch_device, precision)
    network = prepare_model(loaded.model, torch_device, compile_model=compile_model)
    return Runtime(torch_device, path, digest, loaded, network, precision)


def warm_up(
    runtime: Runtime,
    batch_size: int,
    tile: int,
    *,
    compile_requested: bool,
    stopping: Callable[[], bool],
) -> bool:
    """Run one batch of (batch_size, 1, tile, tile) zeros, in the runtime's precision (the
    autocast of `streamdenoise.model.inference`), so the first micrograph is not slow (a
    compiled network compiles here, for the autocast it will serve in). A compilation
    that fails when nobody asked for it (`compile_requested` False) falls back to the
    eager network; one that was asked for raises DeviceError. Returns False when
    `stopping()` says a stop ended it (a Ctrl-C or stop also ends the compiler's
    processes), True when the network is ready."""
    compiled = runtime.compiled
    zeros = torch.zeros(batch_size, 1, tile, tile, device=runtime.device)
    reduced = runtime.dtype != torch.float32
    with (
        torch.inference_mode(),
        torch.autocast(runtime.device.type, dtype=runtime.dtype, enabled=reduced),
    ):
        try:
            runtime.network(zeros)
        except Exception as error:
            if stopping():
                log.info("stopped during warm-up (%s)", one_line(error, 200))
                return False
            log.error("warm-up failed: %s", log_text(error))
            if not compiled or compile_requested:
                raise DeviceError(
                    f"the model failed on {runtime.device}: {one_line(error, 200)} (the log "
                    "has the whole message)" + ("; try --no-compile" if compiled else "")
                ) from error
            log.warning("torch.compile failed; running the model eagerly")
            runtime.network = prepare_model(
                runtime.loaded.model, runtime.device, compile_model=False
            )
            runtime.network(zeros)
    log.info("model ready on %s (%s)", runtime.label, "compiled" if runtime.compiled else "eager")
    return True
