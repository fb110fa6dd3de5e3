"""Decoding audio for every modality that hears (audio, the sound track of video).

Any container PyAV opens (wav, flac, mp3, ogg, m4a/aac, and the audio track of mp4/mkv/webm/mov/avi)
from a path or bytes, or a ``(samples, sample_rate)`` pair, becomes mono float32 at the rate the
model wants: channels are averaged, and the rate converted with soxr. Zero-length and undecodable
input, and files without an audio stream, are :class:`InputError`; digital silence is valid audio.

Files can also be decoded as a stream (:func:`open_audio` -> :func:`decoded` -> :func:`resampled`
-> :func:`fixed_windows`), frame by frame through soxr's streaming resampler, so a file of any
length is held a window at a time. Flushed at the end, the stream gives the very same samples as
resampling the whole signal at once.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from multiembed.errors import InputError
from multiembed.extras import require
from multiembed.sources import open_regular, read_bytes, sha256_hex

#: most samples one resampler call returns: upsampling multiplies a frame's length (16000x for a WAV
#: whose header says 1 Hz: one 2048-sample frame would be 131 MB), so such frames are fed in pieces
RESAMPLED_CHUNK = 1 << 19

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


def _undecodable(error: Exception) -> InputError:
    return InputError(f"cannot decode audio ({type(error).__name__}: {error})")


@contextmanager
def open_audio(source: bytes | BinaryIO) -> Iterator[tuple[Any, Any]]:
    """The PyAV container of bytes or an open (regular) file, and its first audio stream."""
    av = require("av", "audio")
    try:
        container = av.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as error:  # PyAV raises many types for broken files
        raise _undecodable(error) from None
    try:
        if not container.streams.audio:
            raise InputError("no audio stream in the file")
        yield container, container.streams.audio[0]
    finally:
        container.close()


def audio_seconds(container: Any, stream: Any) -> float | None:
    """The stream's duration from the metadata (the container's if the stream has none), or None."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration / 1_000_000)  # AV_TIME_BASE
    return None


def decoded(container: Any, stream: Any, start: float | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """Each decoded frame as mono float32 samples (channels averaged) and its sample rate.

    With ``start`` (seconds; after a seek), the samples before it are left out.
    """
    found = False
    try:
        for frame in container.decode(stream):
            array = _as_float(frame.to_ndarray())
            if frame.format.is_planar:
                mono = array.mean(axis=0)  # (channels, n) -> mono
            else:
                mono = array.reshape(-1, len(frame.layout.channels)).mean(axis=1)
            if start is not None and frame.time is not None:
                mono = mono[max(0, round((start - frame.time) * frame.sample_rate)) :]
            found = True
            yield mono, int(frame.sample_rate)
    except InputError:
        raise
    except Exception as error:  # PyAV raises many types for broken files
        raise _undecodable(error) from None
    if not found:
        raise InputError("no decodable audio samples")


def resampled(
    chunks: Iterable[tuple[np.ndarray, int]], target_rate: int, max_seconds: float | None = None
) -> Iterator[np.ndarray]:
    """Chunks at ``target_rate`` from chunks at their own rate, through soxr's streaming resampler.

    Only the first ``max_seconds`` of the source are read, as if the file ended there. The stream
    is flushed at the end (and where the rate changes), so the output equals ``resample`` of the
    whole signal. NaN or infinite samples are an :class:`InputError`.
    """
    soxr = require("soxr", "audio")
    resampler: Any = None
    rate = 0
    budget: int | None = None  # source samples still to read, at ``rate``
    for samples, chunk_rate in chunks:
        if chunk_rate != rate:
            if resampler is not None:
                yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if max_seconds is not None:
                budget = int(max_seconds * chunk_rate) if budget is None else budget * chunk_rate // rate
            rate = chunk_rate
            resampler = None if rate == target_rate else soxr.ResampleStream(rate, target_rate, 1)
        if budget is not None:
            samples = samples[:budget]
            budget -= len(samples)
        if not np.all(np.isfinite(samples)):
            raise InputError("audio contains NaN or infinite samples")
        if resampler is None:
            yield samples
        else:
            step = max(1, RESAMPLED_CHUNK * rate // target_rate)  # the whole frame unless upsampling
            for start in range(0, len(samples), step):
                yield resampler.resample_chunk(samples[start : start + step])
        if budget == 0:
            break
    if resampler is not None:
        yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def fixed_windows(chunks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Consecutive windows of ``size`` samples (the last one shorter), holding one window at a time."""
    pending: list[np.ndarray] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held < size:
            continue
        joined = np.concatenate(pending)
        starts = range(0, len(joined) - size + 1, size)
        for start in starts:
            yield joined[start : start + size]
        rest = joined[starts[-1] + size :]
        pending, held = [rest], len(rest)
    if held:
        yield np.concatenate(pending)


def _decode_container(source: bytes | Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of bytes or a regular file whole: samples at the file's rate."""
    opened = open_regular(source) if isinstance(source, Path) else nullcontext(source)
    with opened as handle, open_audio(handle) as (container, stream):
        chunks = list(decoded(container, stream))
    return np.concatenate([samples for samples, _ in chunks]), chunks[-1][1]


def load_audio(value: Any, target_rate: int, max_seconds: float | None = None) -> tuple[np.ndarray, str]:
    """Mono float32 samples at ``target_rate`` (the first ``max_seconds``) and the item's content key."""
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
    if max_seconds is not None:
        samples = samples[: int(max_seconds * rate)]
    if samples.size == 0:
        raise InputError("no audio samples (zero length)")
    if not np.all(np.isfinite(samples)):
        raise InputError("audio contains NaN or infinite samples")
    return resample(samples, rate, target_rate), key
