"""Builders for image files: every format and mode the loader accepts, and every bad case it refuses."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo(seed: int, size: tuple[int, int] = (80, 60)) -> Image.Image:
    """A smooth random RGB picture (gradients + noise), so resizing and cropping matter."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 255
    noise = rng.normal(0, 25, (height, width, 3))
    return Image.fromarray(np.clip(base * rng.uniform(0.5, 1.0, 3) + noise, 0, 255).astype(np.uint8))


def png_bomb() -> bytes:
    """A valid PNG header claiming 20000 x 20000 pixels; refused before any pixel is decoded."""
    buffer = io.BytesIO()
    Image.new("L", (2, 2)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = 8  # after the signature: length(4) type(4) data(13) crc(4)
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", 20000, 20000)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 21])) & 0xFFFFFFFF
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


def good_images(folder: Path) -> list[Path]:
    """One file per accepted format and awkward mode; returns them in the walk's sorted order."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Image.Image | bytes] = {
        "a.jpg": photo(1),
        "b.png": photo(2),
        "c.webp": photo(3),
        "d.bmp": photo(4),
        "e.tiff": photo(5),
        "f_palette.png": photo(6).convert("P"),
        "g_grey.png": photo(7).convert("L"),
        "h_alpha.png": photo(8).convert("RGBA"),
        "i_cmyk.jpg": photo(9).convert("CMYK"),
        "j_16bit.png": Image.fromarray(np.asarray(photo(10).convert("L"), dtype=np.uint16) * 257),
        "nested/k.jpeg": photo(11),
    }
    frames = [photo(12), photo(13)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    files["l_anim.gif"] = buffer.getvalue()
    paths = []
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path)
        paths.append(path)
    return sorted(paths, key=lambda p: (len(p.relative_to(folder).parts) > 1, p.name))


def bad_images(folder: Path) -> dict[Path, str]:
    """Each bad case with a fragment of the reason the loader must give."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = io.BytesIO()
    photo(20, (200, 150)).save(jpeg, format="JPEG")
    unidentified = "not an image, or an unsupported image format"  # PIL cannot tell what it is
    cases = {
        "bad_truncated.jpg": (
            jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
            "corrupt or truncated image (image file is truncated",
        ),
        "bad_corrupt.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, unidentified),
        "bad_empty.jpg": (b"", "empty file (0 bytes)"),
        "bad_text.jpg": (b"this is not an image, just text\n" * 10, unidentified),
        "bad_bomb.png": (png_bomb(), "image too large, possible decompression bomb"),
    }
    one = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 0, 0)).save(one, format="PNG")
    cases["bad_tiny.png"] = (one.getvalue(), "image too small: 1x1 pixels (minimum 2x2)")
    reasons = {}
    for name, (data, reason) in cases.items():
        (folder / name).write_bytes(data)
        reasons[folder / name] = reason
    return reasons
