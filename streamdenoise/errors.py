"""Package errors. Each is also a builtin exception so callers can catch either."""

from __future__ import annotations

from pathlib import Path


class StreamDenoiseError(Exception):
    """Base class of every error raised on purpose by streamdenoise."""


class MicrographError(StreamDenoiseError, ValueError):
    """A micrograph file cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ReferenceError_(StreamDenoiseError, ValueError):
    """A reference density (map or atomic model) cannot be used."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelFileError(StreamDenoiseError, ValueError):
    """A model file is missing, corrupt, or of an unsupported version."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DeviceError(StreamDenoiseError, RuntimeError):
    """A requested compute device is not usable."""
