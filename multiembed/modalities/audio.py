"""Audio modality: the Whisper encoder, pooled over the frames that hold real audio.

Whisper's feature extractor pads every clip to 30 s and the encoder only accepts that length, so a
plain mean over its 1500 frames is mostly padding. Each 30 s window is pooled with a masked mean
over its real frames (ceil(samples / 320)); longer clips are split into windows whose vectors are
averaged, weighted by their real frames, before the shared L2 normalisation. The encoder is run
from its own submodules (:func:`whisper_states`), with the last layer queried at the real positions
only (its keys and values still cover all 1500): Whisper's vectors exactly, ~1/7 less compute.

Fast mode, ``pad_seconds=X``: for a clip of a few seconds ~90% of Whisper's compute is padding. With
``X`` the encoder runs on each window's real audio rounded up to whole seconds, at least X (at most
30), with the positional embeddings of that many positions; its mel frames are those of the 30 s
window, cut. The real frames then attend to (30 - X) s less padding, so the vectors move: the fast
mode is another vector space, recorded in the identity (a collection refuses the other mode). A
30 s window is computed as in the exact mode. Windows of equal length share an encoder pass; they
are never padded to a neighbour's length (Whisper has no attention mask), so a clip's vector does
not depend on its batch. Measured on 48 synthetic 2-10 s sounds, Whisper-base-sized encoder with
random weights (``benchmarks/audio.py``; no real weights offline; random attention is nearly
uniform, likely the worst case for cosine), X: min cosine to exact / top-10 agreement / speed vs
Whisper's own pipeline, 2-core CPU: 2: 0.833 / 96% / 3.8x, 5: 0.860 / 96% / 4.0x, 10: 0.913 / 100% / 4.5x,
15: 0.954 / 100% / 2.8x, 20: 0.978 / 100% / 2.3x, 25: 0.994 / 100% / 1.7x (exact mode: 1.08x).
Only X = 25 keeps cosine >= 0.99, for 1.7x; X = 10 is the fast choice (all clips up to 10 s share
one length, so they batch). The default stays the exact mode (``pad_seconds=None``).

Memory stays bounded whatever the duration. A file of at most :data:`EAGER_WINDOWS` windows is
decoded in the loader (a worker process) into log-mel windows; a longer one is only hashed and
probed there, and handed on as an :class:`AudioFile` that the main process decodes, resamples and
cuts as a stream, a few windows per encoder pass, keeping a running frame-weighted sum. Both paths
give the same vectors; ``max_seconds`` embeds only the beginning of every clip.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from multiembed.audio import (
    AUDIO_EXTENSIONS,
    VIDEO_EXTENSIONS,
    audio_seconds,
    decoded,
    fixed_windows,
    load_audio,
    open_audio,
    resampled,
)
from multiembed.batching import windows
from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ConfigError, InputError, ModelNotFoundError
from multiembed.models import ResolvedModel, loading
from multiembed.pooling import mean_pool
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.sources import Loaded, hash_file, open_regular, sha256_hex, too_large

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

WHISPER_MODELS = (
    ModelInfo("whisper-base", "openai/whisper-base", 512, "Whisper base encoder (74M); masked mean"),
    ModelInfo("whisper-tiny", "openai/whisper-tiny", 384, "Whisper tiny encoder (39M); fastest"),
    ModelInfo("whisper-small", "openai/whisper-small", 768, "Whisper small encoder (244M)"),
)

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
    """A long file, decoded as a stream when it is embedded; small and picklable."""

    path: str
    key: str
    size: int
    mtime_ns: int
    max_seconds: float | None
    #: estimated real frames, to batch by size
    frames: int


def fast_positions(frames: int, pad_seconds: float, window: int, per_second: int) -> int:
    """Encoder positions of a window in the fast mode: its real frames rounded up to whole seconds
    (so clips of similar length share a batch), at least ``pad_seconds``, at most the whole window."""
    whole_seconds = -(-frames // per_second) * per_second
    return min(window, max(whole_seconds, math.ceil(pad_seconds * per_second)))


def whisper_states(encoder: Any, features: torch.Tensor, queries: int) -> torch.Tensor:
    """The Whisper encoder's last hidden states [B, queries, d] for log-mel ``features`` [B, mels, 2P].

    The same computation as ``WhisperEncoder.forward`` (which accepts only 3000 mel frames), built
    from its submodules so that a window of any even length runs on its own P positions, with the
    positional embeddings 0..P-1. The last layer computes keys and values at every position but
    queries, feed-forward and final norm only at the first ``queries`` ones: the positions pooled.
    """
    functional = torch.nn.functional
    hidden = functional.gelu(encoder.conv2(functional.gelu(encoder.conv1(features)))).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
    *layers, last = encoder.layers
    for layer in layers:
        hidden = layer(hidden, None)
    if queries >= hidden.shape[1]:
        return encoder.layer_norm(last(hidden, None))  # type: ignore[no-any-return]
    normed = last.self_attn_layer_norm(hidden)
    attended, _ = last.self_attn(hidden_states=normed[:, :queries], key_value_states=normed)
    hidden = hidden[:, :queries] + attended
    hidden = hidden + last.fc2(last.activation_fn(last.fc1(last.final_layer_norm(hidden))))
    if hidden.dtype == torch.float16:  # as WhisperEncoderLayer does
        clamp = torch.finfo(hidden.dtype).max - 1000
        hidden = hidden.clamp(min=-clamp, max=clamp)
    return encoder.layer_norm(hidden)  # type: ignore[no-any-return]


def _grouped(
    parts: list[tuple[np.ndarray, int, int]],
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Windows (features, real frames, owner) of equal length stacked together, longest first."""
    lengths = sorted({features.shape[-1] for features, _, _ in parts}, reverse=True)
    groups = []
    for length in lengths:
        members = [part for part in parts if part[0].shape[-1] == length]
        groups.append(
            (
                torch.from_numpy(np.stack([features for features, _, _ in members])),
                torch.tensor([frames for _, frames, _ in members], dtype=torch.int64),
                torch.tensor([owner for _, _, owner in members], dtype=torch.int64),
            )
        )
    return groups


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
            with open_audio(data) as (container, stream):
                return Loaded(
                    _stacked(list(self._decode(container, stream, self.max_seconds))), sha256_hex(data)
                )
        samples, key = load_audio(value, int(self.feature_extractor.sampling_rate), self.max_seconds)
        return Loaded(_stacked(list(self.window_features([samples]))), key)

    def _file(self, path: Path) -> Loaded:
        """Short files decoded here; long ones (by metadata, or by decoding) become an AudioFile."""
        key = hash_file(path, self.max_bytes)  # only regular files, at most max_bytes
        window_seconds = int(self.feature_extractor.n_samples) / int(self.feature_extractor.sampling_rate)
        with open_regular(path) as handle:
            info = os.fstat(handle.fileno())
            if info.st_size == 0:
                raise InputError("empty file (0 bytes)")
            with open_audio(handle) as (container, stream):
                seconds = audio_seconds(container, stream)
                if seconds is not None and self.max_seconds is not None:
                    seconds = min(seconds, self.max_seconds)
                rate = int(self.feature_extractor.sampling_rate)
                frames = math.ceil(
                    (seconds or (EAGER_WINDOWS + 1) * window_seconds) * rate / SAMPLES_PER_FRAME
                )
                later = Loaded(
                    AudioFile(str(path), key, info.st_size, info.st_mtime_ns, self.max_seconds, frames), key
                )
                if seconds is not None and seconds > EAGER_WINDOWS * window_seconds:
                    next(decoded(container, stream))  # a broken codec is still this item's error here
                    return later
                eager: list[Window] = []
                for window in self._decode(container, stream, self.max_seconds):
                    eager.append(window)
                    if len(eager) > EAGER_WINDOWS:  # the metadata was missing or wrong
                        return later
        return Loaded(_stacked(eager), key)

    def stream(self, clip: AudioFile) -> Iterator[Window]:
        """The windows of a long file, decoded lazily (in the main process)."""
        with open_regular(Path(clip.path)) as handle:
            info = os.fstat(handle.fileno())
            if (info.st_size, info.st_mtime_ns) != (clip.size, clip.mtime_ns):
                raise InputError("the file changed after it was hashed")
            with open_audio(handle) as (container, stream):
                found = False
                for window in self._decode(container, stream, clip.max_seconds):
                    found = True
                    yield window
        if not found:
            raise InputError("no audio samples (zero length)")


class AudioEncoder(Encoder):
    """Audio vectors from a Whisper encoder (any size, or a local Hugging Face directory)."""

    modality = "audio"
    decodes_in_workers = True

    def __init__(
        self,
        encoder: torch.nn.Module,
        feature_extractor: Any,
        *,
        model_id: str,
        policy: DevicePolicy,
        normalize: bool = True,
        batch_size: int = 8,
        workers: int | None = None,
        max_seconds: float | None = None,
        max_bytes: int | None = DEFAULT_AUDIO_MAX_BYTES,
        pad_seconds: float | None = None,
    ) -> None:
        config: Any = encoder.config  # a transformers config, untyped behind Module.__getattr__
        super().__init__(
            model_id=model_id,
            dim=int(config.d_model),
            policy=policy,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
        )
        if max_seconds is not None and (
            isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not max_seconds > 0
        ):
            raise ConfigError(f"max_seconds must be a number > 0 or None, got {max_seconds!r}")
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 1):
            raise ConfigError(f"max_bytes must be an integer >= 1 or None, got {max_bytes!r}")
        if pad_seconds is not None and (
            isinstance(pad_seconds, bool) or not isinstance(pad_seconds, (int, float)) or not pad_seconds > 0
        ):
            raise ConfigError(f"pad_seconds must be a number > 0 or None, got {pad_seconds!r}")
        window_seconds = int(feature_extractor.n_samples) / int(feature_extractor.sampling_rate)
        if pad_seconds is not None and pad_seconds >= window_seconds:
            pad_seconds = None  # padded to the whole window: Whisper's own, exact computation
        self.module = policy.place(encoder)
        self._loader = AudioLoader(feature_extractor, max_seconds, max_bytes, pad_seconds)

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        trust_remote_code: bool = False,
        normalize: bool = True,
        batch_size: int | None = None,
        workers: int | None = None,
        max_seconds: float | None = None,
        max_bytes: int | None = DEFAULT_AUDIO_MAX_BYTES,
        pad_seconds: float | None = None,
    ) -> AudioEncoder:
        """Load only what embedding needs: the feature extractor and the encoder half of Whisper.

        ``batch_size`` defaults to 1 clip per forward on CPU, where batching 1500-frame windows only
        adds memory traffic (measured 0.88x of clip-by-clip at 8), and 8 on accelerators and in the
        fast mode (short windows: 8 at a time measured 1.9x clip by clip at 10 s on CPU); a long,
        streamed file runs ``batch_size`` windows per pass. ``max_seconds`` embeds only the first
        seconds of each clip (None: all of it); ``max_bytes`` makes bigger files item errors.
        ``pad_seconds`` is the fast mode (see the module docstring): None (or 30) is Whisper's own
        30 s padding, exact; a number runs the encoder on each window's real seconds, at least that many.
        """
        from transformers import AutoFeatureExtractor, AutoModel

        with loading(model.model_id, "a Whisper model"):
            whisper = AutoModel.from_pretrained(model.path, trust_remote_code=trust_remote_code)
            extractor = AutoFeatureExtractor.from_pretrained(model.path, trust_remote_code=trust_remote_code)
        if not hasattr(whisper, "get_encoder") or not hasattr(extractor, "n_samples"):
            raise ModelNotFoundError(f"{model.model_id}: not a Whisper-style encoder-decoder model")
        return cls(
            whisper.get_encoder(),
            extractor,
            model_id=model.model_id,
            policy=policy,
            normalize=normalize,
            batch_size=batch_size or (1 if policy.device.type == "cpu" and pad_seconds is None else 8),
            workers=workers,
            max_seconds=max_seconds,
            max_bytes=max_bytes,
            pad_seconds=pad_seconds,
        )

    def loader(self, role: Role) -> AudioLoader:
        return self._loader

    def size_of(self, raw: WhisperWindows | AudioFile) -> int:
        return raw.frames if isinstance(raw, AudioFile) else int(raw.frames.sum())

    def identity_options(self) -> dict[str, Any]:
        return {
            **super().identity_options(),
            "max_seconds": self._loader.max_seconds,
            "pad_seconds": self._loader.pad_seconds,
        }

    def details(self) -> dict[str, Any]:
        extractor = self._loader.feature_extractor
        return {
            "pooling": "masked mean per 30 s window, windows weighted by real frames",
            "sample_rate": int(extractor.sampling_rate),
            "window_samples": int(extractor.n_samples),
            "mel_bins": int(extractor.feature_size),
        }

    def preprocess(self, raws: list[WhisperWindows | AudioFile], role: Role) -> dict[str, Any]:
        """The windows of the decoded clips, grouped by length (``groups``: features, real frames and
        owning clip); the long files to stream (``streams``: clip index, file) stay a CPU list."""
        parts = [
            (features, int(frames), index)
            for index, raw in enumerate(raws)
            if isinstance(raw, WhisperWindows)
            for features, frames in zip(raw.features, raw.frames, strict=True)
        ]
        return {
            "groups": _grouped(parts),
            "streams": [(index, raw) for index, raw in enumerate(raws) if isinstance(raw, AudioFile)],
            "clips": len(raws),
        }

    def forward(self, batch: dict[str, Any], role: Role) -> ModelOutput:
        """Per clip, the frame-weighted sum of its windows' masked means, and its real frames.

        Windows of one length run through the encoder together (Whisper has no attention mask, so
        windows are never padded to a neighbour's length). Long files are decoded here,
        ``batch_size`` windows per encoder pass, and summed as they go.
        """
        sums = torch.zeros(batch["clips"], self.dim, dtype=torch.float32, device=self.device)
        frames = torch.zeros(batch["clips"], 1, dtype=torch.float32, device=self.device)

        def add(features: torch.Tensor, counts: torch.Tensor, owners: torch.Tensor) -> None:
            hidden = whisper_states(self.module, features, int(counts.max()))
            positions = torch.arange(hidden.shape[1], device=hidden.device)
            vectors = mean_pool(hidden, positions.unsqueeze(0) < counts.unsqueeze(1)).float()
            weights = counts.to(torch.float32).unsqueeze(1)
            sums.index_add_(0, owners, vectors * weights)
            frames.index_add_(0, owners, weights)

        for features, counts, owners in batch["groups"]:
            add(features, counts, owners)
        for owner, clip in batch["streams"]:
            for chunk in windows(self._loader.stream(clip), self.batch_size):
                for features, counts, owners in self.policy.move(
                    _grouped([(features, count, owner) for features, count in chunk])
                ):
                    add(features, counts, owners)
        return ModelOutput(hidden=sums, extras={"frames": frames})

    def pool(self, output: ModelOutput, batch: dict[str, Any], role: Role) -> torch.Tensor:
        """The running sums divided by the real frames: windows weighted by their real frames."""
        total: torch.Tensor = output.extras["frames"]
        return output.hidden / total


SPEC = register(
    ModalitySpec(
        name="audio",
        description="speech, music and sounds, and the sound track of videos (Whisper encoder)",
        default_model="whisper-base",
        models=WHISPER_MODELS,
        extensions=AUDIO_EXTENSIONS | VIDEO_EXTENSIONS,
        encoder_class=AudioEncoder,
    )
)
