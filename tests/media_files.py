"""Synthetic audio and video files, made in-process with soundfile and PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tone(seconds: float, rate: int = 16000, frequency: float = 440.0, channels: int = 1) -> np.ndarray:
    times = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * frequency * times).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def chirp(seconds: float, rate: int = 16000, low: float = 100.0, high: float = 700.0) -> np.ndarray:
    """A sweep from ``low`` to ``high`` Hz: unlike a tone, every window of it is different."""
    times = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * (low * times + (high - low) * times**2 / (2 * seconds))
    return (0.3 * np.sin(phase)).astype(np.float32)


def stereo(seconds: float, rate: int) -> np.ndarray:
    """Two different channels (a tone and a quieter sweep), so a downmix that drops one shows."""
    return np.stack([tone(seconds, rate), 0.5 * chirp(seconds, rate, 300.0, 3000.0)], axis=1)


def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    """wav/flac/ogg through soundfile; mp3/m4a through PyAV, mono or stereo as ``samples`` are."""
    if path.suffix in (".wav", ".flac", ".ogg"):
        import soundfile

        soundfile.write(path, samples, rate)
        return path
    import av

    codec = {".mp3": "mp3", ".m4a": "aac"}[path.suffix]
    planes = samples[None, :] if samples.ndim == 1 else samples.T
    layout = "mono" if len(planes) == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        frame_size = 1152 if codec == "mp3" else 1024
        for start in range(0, planes.shape[1], frame_size):
            chunk = np.ascontiguousarray(planes[:, start : start + frame_size], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def decode_with_swresample(path: Path, rate: int) -> np.ndarray:
    """The first audio stream as mono float32 at ``rate``, decoded independently of multiembed.

    PyAV's resampler (libswresample) turns whatever sample format the codec gives into interleaved
    float32 at the file's own rate; librosa averages the channels (``to_mono``; swresample's own
    downmix would scale by sqrt(2), not average) and converts the rate (soxr_hq). Only the codec
    (libavcodec) is shared with multiembed: no other AAC decoder is available offline.
    """
    import av
    import librosa

    chunks = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        native, channels = stream.codec_context.sample_rate, stream.codec_context.layout.nb_channels
        layout = stream.codec_context.layout.name
        resampler = av.AudioResampler(format="flt", layout=layout, rate=native)
        for frame in [*container.decode(stream), None]:
            chunks += [out.to_ndarray().reshape(-1, channels) for out in resampler.resample(frame)]
    mono = librosa.to_mono(np.concatenate(chunks).T)
    return librosa.resample(mono, orig_sr=native, target_sr=rate)


def decode_all_frames(path: Path) -> list[np.ndarray]:
    """Every frame of the first video stream as HxWx3 uint8, in presentation order."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def centre_frames(frames: list[np.ndarray], count: int) -> list[np.ndarray]:
    """At a constant frame rate, the frames on screen at the centres of ``count`` equal time slices:
    slice k's centre is at frame position (k + 1/2) * n / count, so frame floor((2k + 1) n / 2count)."""
    return [frames[(2 * k + 1) * len(frames) // (2 * count)] for k in range(count)]


def pattern_frame(index: int, size: int) -> np.ndarray:
    """A colour picture with gradients, a hard edge and a checkerboard, all moving with ``index``
    (no two of the first 256 alike): resizing, cropping, channel order and frame choice change it."""
    y, x = np.mgrid[0:size, 0:size]
    red = (x * 255 // (size - 1) + 5 * index) % 256
    green = y * 255 // (size - 1)
    blue = np.where(((x + index) // 4 + y // 4) % 2 == 0, 40, 200)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def frame_level(index: int) -> int:
    """The grey level that encodes frame ``index``, far enough apart to survive compression."""
    return 8 + 12 * index


def write_video(path: Path, frames: int, fps: int = 8, size: int = 64, audio: bool = True,
                rate: int = 16000, pattern: bool = False, faststart: bool = False) -> Path:  # fmt: skip
    """Frame i is flat grey at frame_level(i) (i < 20), so a test can read which frame it got, and
    the sound a tone; with ``pattern``, frame i is pattern_frame(i) and the sound a chirp.
    ``faststart`` (mp4) puts the index (moov) before the frames, so a cut file still opens."""
    import av

    codecs = {".webm": ("libvpx-vp9", "libopus"), ".avi": ("mpeg4", "mp3")}
    codec, audio_codec = codecs.get(path.suffix, ("libx264", "aac"))
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        video = container.add_stream(codec, rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = (
            container.add_stream(audio_codec, rate=48000 if audio_codec == "libopus" else rate)
            if audio
            else None
        )
        for index in range(frames):
            pixels = (
                pattern_frame(index, size)
                if pattern
                else np.full((size, size, 3), frame_level(index % 20), dtype=np.uint8)
            )
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            audio_rate = sound.rate
            wave = (chirp if pattern else tone)(frames / fps, audio_rate)
            size_per_frame = sound.frame_size or 1024
            for start in range(0, len(wave), size_per_frame):
                chunk = wave[start : start + size_per_frame]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                frame.sample_rate = audio_rate
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return path
