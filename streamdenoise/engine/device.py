"""Choosing the compute device. A requested GPU that is not usable is an error."""

from __future__ import annotations

import torch

from streamdenoise.errors import DeviceError


def resolve_device(request: str = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a usable torch.device.

    "auto" picks the first CUDA device when one is usable, else the CPU. An explicit CUDA
    request that cannot be honoured raises DeviceError (never a silent CPU fallback).
    """
    request = request.strip().lower()
    if request == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(request)
    except RuntimeError as error:
        raise DeviceError(f"unknown device {request!r}: use auto, cpu, cuda or cuda:N") from error
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(f"unsupported device {request!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {request!r} requested but CUDA is not available "
            f"(torch {torch.__version__}, built for CUDA: {torch.version.cuda or 'no'})"
        )
    index = device.index or 0
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {request!r} requested but only {torch.cuda.device_count()} GPU(s) present"
        )
    return torch.device("cuda", index)
