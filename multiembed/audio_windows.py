"""Cutting audio into Whisper's inputs: log-mel windows of 30 s and the real encoder frames of each.

Whisper's feature extractor pads every clip to 30 s and its encoder only accepts that length. A clip
is cut into 30 s windows, and each keeps its count of real encoder frames (ceil(samples / 320)), which
the encoder pools over (:mod:`multiembed.modalities.audio`). In the fast mode (``pad_seconds``,
described and measured there) a window is cut shorter: its mel frames are those of the 30 s window,
kept for its real audio rounded up to whole seconds, at least ``pad_seconds`` (:func:`fast_positions`).

Memory stays bounded whatever the duration. A file of at most :data:`EAGER_WINDOWS` windows is
decoded in the loader (a worker process) into log-mel windows; a longer one is only hashed and
probed there, and handed on as an :class:`AudioFile` that the main process decodes, resamples and
cuts as a stream (:meth:`AudioLoader.stream`), a few windows per encoder pass. Both paths give the
same windows; ``max_seconds`` keeps only the beginning of every clip. Nothing here holds a model.

Bytes (uploads to the server, the Python API) take the same two paths: a long clip's
:class:`AudioFile` carries the encoded bytes and is decoded from an in-memory buffer as a stream.
Its memory is then that of the upload, never that of its duration: decoded windows (1.9 MB of
samples per 30 s) would otherwise make a small file of compressed silence, or a WAV whose header
says 1 Hz, cost gigabytes (8 h of silent FLAC, 729 KB, took 3 GB held whole).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from multiembed.audio import audio_seconds, decoded, fixed_windows, load_audio, open_audio, resampled
from multiembed.batching import windows
from multiembed.errors import InputError
from multiembed.sources import Loaded, hash_file, open_regular, sha256_hex, too_large

#: encoder frames per input sample: mel hop 160, then the encoder's stride-2 convolution
SAMPLES_PER_FRAME = 320
#: files longer than this many 30 s windows are streamed in the main process, not decoded in a worker
EAGER_WINDOWS = 4
#: windows whose log-mel features are computed in one call (4x faster per window than one by one)
EXTRACT_WINDOWS = 4
#: an audio file bigger than this is an item error (``max_bytes=``); it is hashed in chunks
DEFAULT_AUDIO_MAX_BYTES = 2 * 1024**3

#: one window: log-mel features [mels, 2 x encoder positions] and its real encoder frames
Window = tuple[np.ndarray, int]


@dataclass(frozen=True)
class WhisperWindows:
    """One clip as Whisper inputs: per window, log-mel features [mels, frames] and its real encoder frames.

    A window has 3000 mel frames (1500 encoder positions) in the exact mode, fewer with ``pad_seconds``.
    """

    features: tuple[np.ndarray, ...]
    frames: np.ndarray


@dataclass(frozen=True)
class AudioFile:
    """A long clip, decoded as a stream when it is embedded; picklable.

    A file is named by its path (and checked unchanged by size and mtime); bytes travel as ``data``,
    the encoded upload itself (at most ``max_bytes``), never decoded samples, which grow with the
    duration and not with the upload.
    """

    path: str
    key: str
    size: int
    mtime_ns: int
    max_seconds: float | None
    #: estimated real frames, to batch by size
    frames: int
    #: the encoded bytes of a clip given as bytes (``path`` is then empty); None for a file
    data: bytes | None = field(default=None, repr=False)


def fast_positions(frames: int, pad_seconds: float, window: int, per_second: int) -> int:
    """Encoder positions of a window in the fast mode: its real frames rounded up to whole seconds
    (so clips of similar length share a batch), at least ``pad_seconds``, at most the whole window."""
    whole_seconds = -(-frames // per_second) * per_second
    return min(window, max(whole_seconds, math.ceil(pad_seconds * per_second)))


def _stacked(parts: list[Window]) -> WhisperWindows:
    if not parts:
        raise InputError("no audio samples (zero length)")
    features = tuple(features for features, _ in parts)
    return WhisperWindows(features, np.array([frames for _, frames in parts], dtype=np.int64))


@dataclass(frozen=True)
class AudioLoader:
    """Decode, resample and cut into 30 s log-mel windows; holds no model, so it runs in workers."""

    feature_extractor: Any
    max_seconds: float | None = None
    max_bytes: int | None = DEFAULT_AUDIO_MAX_BYTES
    pad_seconds: float | None = None

    def positions(self, frames: int) -> int:
        """Encoder positions a window with ``frames`` real frames runs on (see :func:`fast_positions`)."""
        window = int(self.feature_extractor.n_samples) // SAMPLES_PER_FRAME
        if self.pad_seconds is None:
            return window
        return fast_positions(frames, self.pad_seconds, window, self.frames_per_second)

    @property
    def frames_per_second(self) -> int:
        return int(self.feature_extractor.sampling_rate) // SAMPLES_PER_FRAME

    def window_features(self, chunks: Iterable[np.ndarray]) -> Iterator[Window]:
        """Log-mel windows of 16 kHz sample chunks, :data:`EXTRACT_WINDOWS` computed at a time.

        A window's mel frames are those of Whisper's 30 s window (the audio zero-padded to 30 s),
        cut to twice its encoder positions: only the samples they depend on are transformed (the
        real ones, then zeros, plus a margin so the STFT's end reflection only ever mirrors zeros).
        """
        extractor = self.feature_extractor
        rate, hop, limit = int(extractor.sampling_rate), int(extractor.hop_length), int(extractor.n_samples)
        for pieces in windows(fixed_windows(chunks, limit), EXTRACT_WINDOWS):
            frames = [-(-len(piece) // SAMPLES_PER_FRAME) for piece in pieces]
            mels = [2 * self.positions(count) for count in frames]
            samples = min(limit, (max(mels) + 2) * hop)
            features = extractor(pieces, sampling_rate=rate, max_length=samples, return_tensors="np")
            for count, length, window in zip(frames, mels, features["input_features"], strict=True):
                yield np.ascontiguousarray(window[:, :length], dtype=np.float32), count

    def _decode(self, container: Any, stream: Any, max_seconds: float | None) -> Iterator[Window]:
        rate = int(self.feature_extractor.sampling_rate)
        return self.window_features(resampled(decoded(container, stream), rate, max_seconds))

    def __call__(self, value: Any) -> Loaded:
        if isinstance(value, (str, Path)):
            return self._file(Path(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if not data:
                raise InputError("empty file (0 bytes)")
            if self.max_bytes is not None and len(data) > self.max_bytes:
                raise too_large(len(data), self.max_bytes)
            key = sha256_hex(data)
            with open_audio(data) as (container, stream):
                return self._probed(
                    container,
                    stream,
                    key,
                    lambda frames: AudioFile("", key, len(data), 0, self.max_seconds, frames, data),
                )
        samples, key = load_audio(value, int(self.feature_extractor.sampling_rate), self.max_seconds)
        return Loaded(_stacked(list(self.window_features([samples]))), key)

    def _file(self, path: Path) -> Loaded:
        """Short files decoded here; long ones (by metadata, or by decoding) become an AudioFile."""
        key = hash_file(path, self.max_bytes)  # only regular files, at most max_bytes
        with open_regular(path) as handle:
            info = os.fstat(handle.fileno())
            if info.st_size == 0:
                raise InputError("empty file (0 bytes)")
            with open_audio(handle) as (container, stream):
                return self._probed(
                    container,
                    stream,
                    key,
                    lambda frames: AudioFile(
                        str(path), key, info.st_size, info.st_mtime_ns, self.max_seconds, frames
                    ),
                )

    def _probed(self, container: Any, stream: Any, key: str, later: Callable[[int], AudioFile]) -> Loaded:
        """The clip's windows if it has at most :data:`EAGER_WINDOWS` of them, else ``later(frames)``.

        A clip long by its metadata is not decoded past its first frame (so a broken codec is still
        this item's error here); one without metadata, or lying in it, is decoded only until it
        proves longer. Either way the windows held here are bounded, whatever the duration.
        """
        window_seconds = int(self.feature_extractor.n_samples) / int(self.feature_extractor.sampling_rate)
        seconds = audio_seconds(container, stream)
        if seconds is not None and self.max_seconds is not None:
            seconds = min(seconds, self.max_seconds)
        rate = int(self.feature_extractor.sampling_rate)
        frames = math.ceil((seconds or (EAGER_WINDOWS + 1) * window_seconds) * rate / SAMPLES_PER_FRAME)
        deferred = Loaded(later(frames), key)
        if seconds is not None and seconds > EAGER_WINDOWS * window_seconds:
            next(decoded(container, stream))
            return deferred
        eager: list[Window] = []
        for window in self._decode(container, stream, self.max_seconds):
            eager.append(window)
            if len(eager) > EAGER_WINDOWS:  # the metadata was missing or wrong
                return deferred
        return Loaded(_stacked(eager), key)

    def stream(self, clip: AudioFile) -> Iterator[Window]:
        """The windows of a long clip, decoded lazily (in the main process): from its file, or from an
        in-memory buffer of its bytes."""
        if clip.data is not None:
            yield from self._streamed(clip.data, clip.max_seconds)
            return
        with open_regular(Path(clip.path)) as handle:
            info = os.fstat(handle.fileno())
            if (info.st_size, info.st_mtime_ns) != (clip.size, clip.mtime_ns):
                raise InputError("the file changed after it was hashed")
            yield from self._streamed(handle, clip.max_seconds)

    def _streamed(self, source: bytes | BinaryIO, max_seconds: float | None) -> Iterator[Window]:
        found = False
        with open_audio(source) as (container, stream):
            for window in self._decode(container, stream, max_seconds):
                found = True
                yield window
        if not found:
            raise InputError("no audio samples (zero length)")
