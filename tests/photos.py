"""Photos generated in memory for the tests: real JPEG/PNG/WebP bytes, and the broken files nurses might send."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _skin(width: int, height: int, seed: int = 0) -> Image.Image:
    """A skin-toned picture with a few darker blobs, so the model sees something lesion-like."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.empty((height, width, 3), dtype=np.float32)
    base[...] = (205, 160, 135)
    for _ in range(6):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.03, 0.1) * min(width, height)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))[..., None]
        base -= blob * np.array((70, 80, 70), dtype=np.float32)
    base += rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(width: int = 640, height: int = 480, *, gps: bool = False, seed: int = 0, quality: int = 90) -> bytes:
    image = _skin(width, height, seed)
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0110] = "TestPhone"  # camera model
    if gps:
        exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0)}
    image.save(out, format="JPEG", quality=quality, exif=exif)
    return out.getvalue()


def png_bytes(width: int = 320, height: int = 240, *, seed: int = 0) -> bytes:
    out = io.BytesIO()
    _skin(width, height, seed).save(out, format="PNG")
    return out.getvalue()


def webp_bytes(width: int = 320, height: int = 240) -> bytes:
    out = io.BytesIO()
    _skin(width, height).save(out, format="WEBP", quality=90)
    return out.getvalue()


def other_format_bytes(fmt: str, width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    _skin(width, height).save(out, format=fmt)
    return out.getvalue()


def pixel_flood_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
