"""The fixed audio sample: drawn 2-10 s clips that calibrate int8 audio cores and run their quality gate.

Like the text and image samples (:mod:`multiembed.fast.corpus`), it is the same on every machine and
needs no files: clips are drawn from a fixed seed as ``(samples, 16000)`` tuples, the input the audio
loader takes. They have the spread an encoder's activations need calibrating on: tones that glide up
or down with harmonics, tremolo, noise bursts of different colour and loudness, and silence gaps
(Whisper's log-mel floor, which the encoder sees in every padded window), from very quiet to loud.
The queries are drawn from another seed, so the retrieval check is not run on calibration clips.
"""

from __future__ import annotations

import numpy as np

#: the sample rate the clips are drawn at (Whisper's: no resampling in the loader)
RATE = 16000


def _clip(generator: np.random.Generator, seconds: float) -> np.ndarray:
    """One clip: a few segments (glide, chord, noise burst, silence) with short fades between them."""
    total = int(seconds * RATE)
    out = np.zeros(total, dtype=np.float64)
    start = 0
    while start < total:
        length = min(total - start, int(generator.uniform(0.3, 2.5) * RATE))
        t = np.arange(length) / RATE
        kind = generator.integers(0, 4)
        if kind == 0:  # a glide with a few harmonics
            low, high = generator.uniform(80, 3000, 2)
            phase = 2 * np.pi * (low * t + (high - low) * t**2 / (2 * max(t[-1], 1e-3)))
            segment = sum(np.sin(k * phase) / k for k in range(1, int(generator.integers(1, 5)) + 1))
        elif kind == 1:  # a chord with tremolo
            tones = generator.uniform(100, 1500, int(generator.integers(2, 4)))
            segment = sum(np.sin(2 * np.pi * f * t) for f in tones) / len(tones)
            segment = segment * (1 + 0.5 * np.sin(2 * np.pi * generator.uniform(2, 9) * t))
        elif kind == 2:  # noise, white or smoothed (darker)
            segment = generator.normal(0, 1, length)
            width = int(generator.integers(1, 24))
            segment = np.convolve(segment, np.ones(width) / np.sqrt(width), mode="same")
        else:  # silence
            segment = np.zeros(length)
        fade = np.minimum(1, np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.01 * RATE))
        out[start : start + length] = generator.uniform(0.005, 0.6) * segment * fade
        start += length
    out += generator.normal(0, generator.uniform(1e-4, 1e-2), total)  # a room's hiss under everything
    return np.clip(out, -1, 1).astype(np.float32)


def sample_clips(count: int = 36, seed: int = 20240611) -> list[tuple[np.ndarray, int]]:
    """``count`` deterministic clips of 2-10 s, as ``(samples, rate)`` tuples."""
    generator = np.random.default_rng(seed)
    return [(_clip(generator, float(generator.uniform(2, 10))), RATE) for _ in range(count)]


def sample_queries(count: int = 12, seed: int = 7) -> list[tuple[np.ndarray, int]]:
    """The held-out clips the retrieval check searches with (another seed: never calibrated on)."""
    return sample_clips(count, seed)
