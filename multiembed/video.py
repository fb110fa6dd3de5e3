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
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from multiembed.audio import VIDEO_EXTENSIONS, audio_seconds, decoded, open_audio, resampled
from multiembed.errors import InputError
from multiembed.extras import require
from multiembed.sources import hash_file, open_regular, too_large

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


def _check_not_truncated(last_time: float | None, wanted: float, start: float, duration: float) -> None:
    """A frame far before the time asked for means the file stops early, unless the gap is small.

    A container may state a little more than its video (a longer sound track): up to a second, or
    5% of the duration, the last frame stands in. A file cut short is an error, not a video of
    repeated frames.
    """
    decoded_until = last_time if last_time is not None else start
    if wanted - decoded_until > max(1.0, 0.05 * duration):
        raise InputError(
            f"truncated video: frames stop at {decoded_until - start:.1f}s of the {duration:.1f}s it states"
        )


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
    """``frames`` RGB frames (HxWx3 uint8) sampled by time, and the mono sound track if asked.

    The sound track is whole up to a minute; of a longer one, the 10 s around its middle.
    """
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
                _check_not_truncated(frame.time, time, start, duration)
                images.append(frame.to_ndarray(format="rgb24"))
                last = frame
        except InputError:
            raise
        except Exception as error:
            raise InputError(f"corrupt video ({type(error).__name__}: {error})") from None
    sound = None
    if audio_rate is not None:
        try:
            sound = _sound_track(value if isinstance(value, Path) else bytes(value), audio_rate)
        except InputError:
            sound = None  # no (decodable) sound track: the caller uses silence
    return images, sound


#: a sound track up to this long is decoded whole (at most twice this, should the metadata lie)
WHOLE_TRACK_SECONDS = 60.0
#: of a longer track, only this much around its middle is decoded (the Perceiver takes 0.64 s of it)
TRACK_MIDDLE_SECONDS = 10.0


def _sound_track(source: Path | bytes, rate: int) -> np.ndarray | None:
    """The first sound track, mono at ``rate``: whole if short, else the seconds around its middle.

    A long track is never decoded whole: the decoder seeks to the middle and decodes only
    :data:`TRACK_MIDDLE_SECONDS`, so a feature-length film costs as little as a short clip.
    """
    opened = open_regular(source) if isinstance(source, Path) else nullcontext(source)
    with opened as handle, open_audio(handle) as (container, stream):
        seconds = audio_seconds(container, stream)
        begin, length = None, 2 * WHOLE_TRACK_SECONDS
        if seconds is not None and seconds > WHOLE_TRACK_SECONDS:
            first = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
            begin, length = first + (seconds - TRACK_MIDDLE_SECONDS) / 2, TRACK_MIDDLE_SECONDS
            try:
                container.seek(int(begin / stream.time_base), stream=stream, backward=True, any_frame=False)
            except Exception as error:  # PyAV raises many types for broken files
                raise InputError(f"cannot seek in the sound track ({type(error).__name__})") from None
        chunks = list(resampled(decoded(container, stream, begin), rate, max_seconds=length))
    sound = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return sound if sound.size else None
