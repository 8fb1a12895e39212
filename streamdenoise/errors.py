"""Package errors. Each is also a builtin exception so callers can catch either."""

from __future__ import annotations

from pathlib import Path


class StreamDenoiseError(Exception):
    """Base class of every error raised on purpose by streamdenoise."""


class FileProblem(StreamDenoiseError, ValueError):
    """A file cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MicrographError(FileProblem):
    """A micrograph (MRC or TIFF) is truncated, corrupt, unsupported or invalid."""


class ReferenceMapError(FileProblem):
    """A reference density (MRC map or PDB/mmCIF model) cannot be used."""


class ModelFileError(FileProblem):
    """A model file is missing, corrupt, or of an unsupported version."""


class SettingsError(StreamDenoiseError, ValueError):
    """A setting (a flag or a configuration key, named in the message) is out of range or
    contradicts another."""


class OutputError(FileProblem, OSError):
    """An output cannot be written at a path (it is a folder, a device, a pipe …). Also an
    OSError, so writers that handle a full or failing disk handle it too."""


class DeviceError(StreamDenoiseError, RuntimeError):
    """A requested compute device is not usable."""


class AlreadyRunning(StreamDenoiseError, RuntimeError):
    """Another process (a daemon or a batch run) holds the state directory's lock."""


def one_line(text: object, limit: int | None = None) -> str:
    """`text` on one line (whitespace runs collapsed to one space), cut to at most `limit`
    characters with "…" (None: any length). For messages that must stay short: journal
    reasons, log lines, the CLI's error line."""
    line = " ".join(str(text).split())
    if limit is not None and len(line) > limit:
        return line[: max(limit - 1, 0)] + "…"
    return line
