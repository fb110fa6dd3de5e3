"""Decoding text items, shared by every modality that accepts text (text, image-text queries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multiembed.errors import InputError
from multiembed.sources import Loaded, read_bytes, sha256_hex


def load_text(value: Any) -> Loaded:
    """Accept str, UTF-8 bytes or a path to a text file; empty text is an error, not a vector."""
    if isinstance(value, Path):
        value = read_bytes(value)
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"not valid UTF-8 text (byte {error.start})") from None
    if not isinstance(value, str):
        raise InputError(f"expected text (str), got {type(value).__name__}")
    if not value.strip():
        raise InputError("empty text")
    return Loaded(value, sha256_hex(value.encode("utf-8")))
