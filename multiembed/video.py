"""Decoding video: N frames sampled uniformly by timestamp, and the sound track.

Frames are fetched by seeking to each timestamp and decoding forward to the frame that covers it,
so a long video is never decoded whole, let alone held in memory. The duration comes from the
stream, else the container, else frame count x rate (``stream.frames`` can be 0), else one counting
pass; variable frame rates are handled because sampling is by time, not by index. A video shorter
than N frames yields repeated frames. Corrupt files, audio-only files and videos without a
decodable frame are :class:`InputError`.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from multiembed.audio import VIDEO_EXTENSIONS, _decode_container, resample
from multiembed.errors import InputError
from multiembed.extras import require
from multiembed.sources import hash_file, too_large

__all__ = ["VIDEO_EXTENSIONS", "frame_times", "read_video", "video_key"]


#: a video file bigger than this is an item error (``max_bytes=``); it is hashed whole, in chunks
DEFAULT_VIDEO_MAX_BYTES = 16 * 1024**3


def video_key(value: Any, max_bytes: int | None = DEFAULT_VIDEO_MAX_BYTES) -> str:
    """sha256 of the file's bytes, read in chunks; only regular files, at most ``max_bytes``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        if max_bytes is not None and len(value) > max_bytes:
            raise too_large(len(value), max_bytes)
        return hashlib.sha256(bytes(value)).hexdigest()
    return hash_file(Path(value), max_bytes)


@contextmanager
def _open(value: Any) -> Iterator[Any]:
    av = require("av", "video")
    source = io.BytesIO(bytes(value)) if isinstance(value, (bytes, bytearray, memoryview)) else str(value)
    try:
        container = av.open(source)
    except Exception as error:
        raise InputError(f"cannot open video ({type(error).__name__}: {error})") from None
    try:
        yield container
    finally:
        container.close()


def _duration(container: Any, stream: Any) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration / 1_000_000)  # AV_TIME_BASE
    if stream.frames and stream.average_rate:
        return float(stream.frames / float(stream.average_rate))
    last = None
    for frame in container.decode(stream):  # last resort: one pass, keeping nothing
        last = frame.time
    container.seek(0)
    return float(last or 0.0)


def frame_times(duration: float, count: int, start: float = 0.0) -> list[float]:
    """The centres of ``count`` equal slices of the video: uniform, and never the very edges."""
    return [start + (index + 0.5) * duration / count for index in range(count)]


def _frame_at(container: Any, stream: Any, time: float) -> Any:
    """The frame on screen at ``time``: seek to the keyframe before it, decode up to it."""
    container.seek(max(0, int(time / stream.time_base)), stream=stream, backward=True, any_frame=False)
    chosen = None
    for frame in container.decode(stream):
        if frame.time is None:
            continue
        if frame.time > time + 1e-6 and chosen is not None:
            break
        chosen = frame
        if frame.time > time:
            break
    return chosen


def read_video(
    value: Any, frames: int, audio_rate: int | None = None
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """``frames`` RGB frames (HxWx3 uint8) sampled by time, and the mono sound track if asked."""
    if isinstance(value, str):
        value = Path(value)
    if isinstance(value, Path) and value.stat().st_size == 0:
        raise InputError("empty file (0 bytes)")
    if isinstance(value, (bytes, bytearray, memoryview)) and not value:
        raise InputError("empty file (0 bytes)")
    images: list[np.ndarray] = []
    with _open(value) as container:
        if not container.streams.video:
            raise InputError("no video stream (an audio-only file?)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
            duration = _duration(container, stream)
            last = None
            for time in frame_times(duration, frames, start):
                frame = _frame_at(container, stream, time) or last
                if frame is None:
                    raise InputError("no decodable video frames")
                images.append(frame.to_ndarray(format="rgb24"))
                last = frame
        except InputError:
            raise
        except Exception as error:
            raise InputError(f"corrupt video ({type(error).__name__}: {error})") from None
    sound = None
    if audio_rate is not None:
        try:
            samples, rate = _decode_container(value if isinstance(value, Path) else bytes(value))
            sound = resample(samples, rate, audio_rate)
        except InputError:
            sound = None  # no (decodable) sound track: the caller uses silence
    return images, sound
