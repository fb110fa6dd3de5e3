"""Decoding audio for every modality that hears (audio, the sound track of video).

Any container PyAV opens (wav, flac, mp3, ogg, m4a/aac, and the audio track of mp4/mkv/webm/mov/avi)
from a path or bytes, or a ``(samples, sample_rate)`` pair, becomes mono float32 at the rate the
model wants: channels are averaged, and the rate converted with soxr. Zero-length and undecodable
input, and files without an audio stream, are :class:`InputError`; digital silence is valid audio.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from multiembed.errors import InputError
from multiembed.extras import require
from multiembed.sources import read_bytes, sha256_hex

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"})


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """High-quality rate conversion (soxr, as librosa uses); a no-op at the same rate."""
    if rate == target_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    soxr = require("soxr", "audio")
    resampled: np.ndarray = soxr.resample(samples, rate, target_rate)
    return resampled.astype(np.float32, copy=False)


def _as_float(array: np.ndarray) -> np.ndarray:
    """PCM integers (s16, s32, u8) to floats in -1..1; float formats pass through."""
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(-np.iinfo(array.dtype).min)
    return array.astype(np.float32, copy=False)


def _decode_container(source: bytes | Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of bytes or a file (a file is streamed, not read whole)."""
    av = require("av", "audio")
    try:
        with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
            if not container.streams.audio:
                raise InputError("no audio stream in the file")
            stream = container.streams.audio[0]
            chunks = []
            for frame in container.decode(stream):
                array = _as_float(frame.to_ndarray())
                if frame.format.is_planar:
                    chunks.append(array.mean(axis=0))  # (channels, n) -> mono
                else:
                    chunks.append(array.reshape(-1, len(frame.layout.channels)).mean(axis=1))
                rate = frame.sample_rate
            if not chunks:
                raise InputError("no decodable audio samples")
    except InputError:
        raise
    except Exception as error:  # PyAV raises many types for broken files
        raise InputError(f"cannot decode audio ({type(error).__name__}: {error})") from None
    return np.concatenate(chunks), rate


def load_audio(value: Any, target_rate: int) -> tuple[np.ndarray, str]:
    """Mono float32 samples at ``target_rate`` and the item's content key."""
    if isinstance(value, (str, Path)):
        value = read_bytes(Path(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if not data:
            raise InputError("empty file (0 bytes)")
        samples, rate = _decode_container(data)
        key = sha256_hex(data)
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], np.ndarray):
        samples, rate = np.asarray(value[0], dtype=np.float32), int(value[1])
        if samples.ndim == 2:  # (n, channels) or (channels, n): average the short axis
            samples = samples.mean(axis=int(np.argmin(samples.shape)))
        key = sha256_hex(f"{rate}:{samples.shape}".encode() + samples.tobytes())
    else:
        raise InputError(
            f"expected audio (path, bytes or a (samples, sample_rate) tuple), got {type(value).__name__}"
        )
    if samples.size == 0:
        raise InputError("no audio samples (zero length)")
    if not np.all(np.isfinite(samples)):
        raise InputError("audio contains NaN or infinite samples")
    return resample(samples, rate, target_rate), key
