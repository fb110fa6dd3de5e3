"""Synthetic audio and video files, made in-process with soundfile and PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tone(seconds: float, rate: int = 16000, frequency: float = 440.0, channels: int = 1) -> np.ndarray:
    times = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * frequency * times).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    """wav/flac/ogg through soundfile; mp3/m4a through PyAV."""
    if path.suffix in (".wav", ".flac", ".ogg"):
        import soundfile

        soundfile.write(path, samples, rate)
        return path
    import av

    codec = {".mp3": "mp3", ".m4a": "aac"}[path.suffix]
    mono = samples if samples.ndim == 1 else samples.mean(axis=1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame_size = 1152 if codec == "mp3" else 1024
        for start in range(0, len(mono), frame_size):
            chunk = mono[start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(
                chunk[None, :].astype(np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def frame_level(index: int) -> int:
    """The grey level that encodes frame ``index``, far enough apart to survive compression."""
    return 8 + 12 * index


def write_video(path: Path, frames: int, fps: int = 8, size: int = 64, audio: bool = True,
                rate: int = 16000) -> Path:  # fmt: skip
    """Frame i is flat grey at frame_level(i) (i < 20), so a test can read which frame it got."""
    import av

    codecs = {".webm": ("libvpx-vp9", "libopus"), ".avi": ("mpeg4", "mp3")}
    codec, audio_codec = codecs.get(path.suffix, ("libx264", "aac"))
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = (
            container.add_stream(audio_codec, rate=48000 if audio_codec == "libopus" else rate)
            if audio
            else None
        )
        for index in range(frames):
            pixels = np.full((size, size, 3), frame_level(index % 20), dtype=np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            audio_rate = sound.rate
            wave = tone(frames / fps, audio_rate)
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
