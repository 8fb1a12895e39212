"""Grayscale PNG thumbnails with the standard library only (zlib + struct)."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def to_uint8(image: np.ndarray, low_percentile: float = 1.0, high_percentile: float = 99.0):
    """Scale a 2-D image to uint8 (ny, nx), clipping at the given percentiles."""
    low, high = np.percentile(image, [low_percentile, high_percentile])
    scaled = (image.astype(np.float64) - low) / max(float(high - low), 1e-12)
    return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)


def encode_png(gray: np.ndarray) -> bytes:
    """Encode a uint8 image (ny, nx) as an 8-bit grayscale PNG."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got {gray.dtype} {gray.shape}")
    height, width = gray.shape
    raw = np.concatenate([np.zeros((height, 1), np.uint8), gray], axis=1).tobytes()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def side_by_side(panels: list[np.ndarray], gap: int = 4) -> bytes:
    """PNG of 2-D images side by side (each scaled to uint8 by its own percentiles, cut to
    the shortest height), separated by white gaps of `gap` pixels."""
    height = min(panel.shape[0] for panel in panels)
    spacer = np.full((height, gap), 255, np.uint8)
    row = [to_uint8(panels[0][:height])]
    for panel in panels[1:]:
        row += [spacer, to_uint8(panel[:height])]
    return encode_png(np.concatenate(row, axis=1))
