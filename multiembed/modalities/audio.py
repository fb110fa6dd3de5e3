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

OpenVINO (``backend="openvino"``/``"auto"``) runs the encoder core in place of torch, group by group,
in either mode (:mod:`multiembed.audio_core`); grouping, streaming and pooling stay here.

Memory stays bounded whatever the duration: how clips are cut into windows, and which files are
decoded in the workers or streamed here, is :mod:`multiembed.audio_windows`. A streamed file runs a
few windows per encoder pass, keeping a running frame-weighted sum. Both paths give the same
vectors; ``max_seconds`` embeds only the beginning of every clip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from multiembed.audio import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from multiembed.audio_core import WindowRunner, whisper_core, whisper_states
from multiembed.audio_windows import DEFAULT_AUDIO_MAX_BYTES, AudioFile, AudioLoader, WhisperWindows
from multiembed.batching import windows
from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ConfigError, ModelNotFoundError
from multiembed.models import ResolvedModel, loading
from multiembed.pooling import mean_pool
from multiembed.registry import ModalitySpec, ModelInfo, register

if TYPE_CHECKING:
    import torch

    from multiembed.fast.core import ExportableCore
else:
    from multiembed.lazy import torch

WHISPER_MODELS = (
    ModelInfo("whisper-base", "openai/whisper-base", 512, "Whisper base encoder (74M); masked mean"),
    ModelInfo("whisper-tiny", "openai/whisper-tiny", 384, "Whisper tiny encoder (39M); fastest"),
    ModelInfo("whisper-small", "openai/whisper-small", 768, "Whisper small encoder (244M)"),
)


#: the encoder's states for a group of equal-length windows and their real frames
States = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


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


class AudioEncoder(Encoder):
    """Audio vectors from a Whisper encoder (any size, or a local Hugging Face directory)."""

    modality = "audio"
    decodes_in_workers = True
    _fast: WindowRunner | None = None

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
        return self._pooled(
            batch, lambda features, counts: whisper_states(self.module, features, int(counts.max()))
        )

    def _pooled(self, batch: dict[str, Any], states: States) -> ModelOutput:
        """``forward``, with each group's encoder states from ``states``: torch, or a fast backend's core."""
        sums = torch.zeros(batch["clips"], self.dim, dtype=torch.float32, device=self.device)
        frames = torch.zeros(batch["clips"], 1, dtype=torch.float32, device=self.device)

        def add(features: torch.Tensor, counts: torch.Tensor, owners: torch.Tensor) -> None:
            hidden = states(features, counts)
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

    @property
    def fast(self) -> WindowRunner | None:
        """A fast backend's core, run group by group inside this encoder's own loop (see ``audio_core``).

        :mod:`multiembed.fast` sets its runner here; the shared pipeline calls what it reads back in
        place of ``forward``: the same grouping, streaming and pooling, with the core's states.
        """
        return self._fast

    @fast.setter
    def fast(self, runner: Callable[[Any], ModelOutput] | None) -> None:
        if isinstance(runner, WindowRunner):  # handed back as read (a saved slot being restored)
            runner = runner.core
        self._fast = None if runner is None else WindowRunner(runner, self._pooled)

    def exportable_core(self) -> ExportableCore:
        """The whole Whisper encoder, dynamic in windows, mel frames and pooled positions, so it runs
        the exact mode and any ``pad_seconds`` (:mod:`multiembed.audio_core`). Each mode is exported,
        calibrated and gated on its own (``pad_seconds`` is in the identity the export cache hashes),
        on drawn 2-10 s clips (:mod:`multiembed.fast.audio_corpus`)."""
        from multiembed.fast.audio_corpus import sample_clips, sample_queries

        return whisper_core(self.module, sample_clips(), sample_queries())

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
