"""Video modality: the multimodal Perceiver (default) or CLIP frame pooling.

``perceiver``: deepmind/multimodal-perceiver run encoder-only (input preprocessor + encoder; the
decoder, ~7 TFLOP per clip, is dropped). Its inputs are ``num_frames`` frames sampled uniformly by
time and resized to ``image_size``, and the sound track at the model's audio rate, the model's
audio length taken around the middle of the clip (silence when there is none); the final latent
array averaged is the vector (512-d). It was trained to reconstruct, not for similarity, so
``clip`` is offered too: the mean of CLIP image vectors over uniformly sampled frames, which shares
CLIP's text space (text queries find videos).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from multiembed.audio import VIDEO_EXTENSIONS
from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ConfigError, ModelNotFoundError
from multiembed.images import HFImageTransform
from multiembed.models import ResolvedModel, loading
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.sources import Loaded
from multiembed.texts import load_text
from multiembed.video import DEFAULT_VIDEO_MAX_BYTES, read_video, video_key

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

if TYPE_CHECKING:
    from multiembed.modalities.image_text import ImageTextEncoder

VIDEO_MODELS = (
    ModelInfo(
        alias="perceiver",
        hub_id="deepmind/multimodal-perceiver",
        dim=512,
        description="multimodal Perceiver, encoder only: 16 frames + sound -> mean of the latents",
    ),
    ModelInfo(
        alias="clip",
        hub_id="openai/clip-vit-base-patch32",
        dim=512,
        description="CLIP frame pooling: mean of 8 frames' CLIP vectors; text queries work",
    ),
)

#: the Perceiver was trained on 25 fps Kinetics clips: its audio rate is samples-per-frame x 25
PERCEIVER_FPS = 25


@dataclass(frozen=True)
class PerceiverClip:
    """Model-ready inputs for one video: frames [T, 3, S, S] in 0..1 and audio [A, 1]."""

    frames: np.ndarray
    audio: np.ndarray


@dataclass(frozen=True)
class PerceiverLoader:
    """Sample frames and sound for the Perceiver; holds no model, so it runs in workers."""

    num_frames: int
    image_size: int
    audio_samples: int
    audio_rate: int
    max_bytes: int | None = DEFAULT_VIDEO_MAX_BYTES

    def __call__(self, value: Any) -> Loaded:
        key = video_key(value, self.max_bytes)
        images, sound = read_video(value, self.num_frames, self.audio_rate)
        size = (self.image_size, self.image_size)
        resized = [
            np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)) for image in images
        ]
        frames = np.stack(resized).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        audio = np.zeros(self.audio_samples, dtype=np.float32)
        if sound is not None and sound.size:
            # At the model's rate, the model's length around the middle of the clip: squeezing the
            # whole track into that length would low-pass away nearly all of the sound.
            start = max(0, (len(sound) - self.audio_samples) // 2)
            window = sound[start : start + self.audio_samples]
            offset = (self.audio_samples - len(window)) // 2
            audio[offset : offset + len(window)] = window
        return Loaded(PerceiverClip(np.ascontiguousarray(frames), audio[:, None]), key)


@dataclass(frozen=True)
class ClipFramesLoader:
    """Sample frames and apply CLIP's image processor to each; holds no model."""

    transform: HFImageTransform
    num_frames: int
    max_bytes: int | None = DEFAULT_VIDEO_MAX_BYTES

    def __call__(self, value: Any) -> Loaded:
        key = video_key(value, self.max_bytes)
        images, _ = read_video(value, self.num_frames)
        pixels = np.stack(
            [np.asarray(self.transform(Image.fromarray(image)), dtype=np.float32) for image in images]
        )
        return Loaded(pixels, key)


def _model_type(path: str) -> str:
    try:
        return str(json.loads((Path(path) / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError):
        return ""


@dataclass(frozen=True)
class VideoOptions:
    """The options ``load("video", ...)`` takes, handed to whichever model family the folder holds."""

    frames: int | None = None
    trust_remote_code: bool = False
    normalize: bool = True
    batch_size: int | None = None
    workers: int | None = None
    max_bytes: int | None = DEFAULT_VIDEO_MAX_BYTES


class VideoEncoder(Encoder):
    """Video vectors; ``from_pretrained`` picks the Perceiver or CLIP frame pooling by model."""

    modality = "video"
    decodes_in_workers = True
    sort_window_batches = 1

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        frames: int | None = None,
        trust_remote_code: bool = False,
        normalize: bool = True,
        batch_size: int | None = None,
        workers: int | None = None,
        max_bytes: int | None = DEFAULT_VIDEO_MAX_BYTES,
    ) -> VideoEncoder:
        """``frames``: how many to sample (Perceiver: the model's 16; CLIP: 8 by default).

        CLIP frame pooling is always normalised (it lives in CLIP's unit-sphere space).
        """
        if not Path(model.path).is_dir():
            raise ModelNotFoundError(f"{model.model_id}: expected a model directory")
        if frames is not None and (not isinstance(frames, int) or frames < 1):
            raise ConfigError(f"frames must be an integer >= 1, got {frames!r}")
        kind = _model_type(model.path)
        options = VideoOptions(frames, trust_remote_code, normalize, batch_size, workers, max_bytes)
        if kind == "perceiver":
            return PerceiverVideoEncoder.build(model, policy, options)
        if kind == "clip":
            return ClipVideoEncoder.build(model, policy, options)
        raise ModelNotFoundError(
            f"{model.model_id}: the video modality takes a multimodal Perceiver or a CLIP model, "
            f"not model_type {kind!r}"
        )


class PerceiverVideoEncoder(VideoEncoder):
    """deepmind/multimodal-perceiver, encoder only; the latents averaged."""

    def __init__(self, perceiver: torch.nn.Module, loader: PerceiverLoader, **kwargs: Any) -> None:
        config: Any = perceiver.config  # a transformers config, untyped behind Module.__getattr__
        super().__init__(dim=int(config.d_latents), **kwargs)
        self.module = self.policy.place(perceiver)
        self._loader = loader

    @classmethod
    def build(
        cls, model: ResolvedModel, policy: DevicePolicy, options: VideoOptions
    ) -> PerceiverVideoEncoder:
        from transformers import PerceiverForMultimodalAutoencoding

        frames, trust_remote_code = options.frames, options.trust_remote_code

        with loading(model.model_id, "a multimodal Perceiver", model.path):
            full = PerceiverForMultimodalAutoencoding.from_pretrained(
                model.path, trust_remote_code=trust_remote_code
            )
        perceiver = full.perceiver
        perceiver.decoder = None  # PerceiverModel skips decoding without one: encoder-only
        # transformers annotates it Callable[..., Any], though None (its default) means "none".
        perceiver.output_postprocessor = None  # type: ignore[assignment]
        config = full.config
        if frames is not None and frames != config.num_frames:
            raise ConfigError(f"{model.model_id} takes exactly {config.num_frames} frames, not {frames}")
        if not isinstance(config.image_size, int):
            raise ModelNotFoundError(
                f"{model.model_id}: expected square frames (an integer image_size), got {config.image_size!r}"
            )
        loader = PerceiverLoader(
            num_frames=config.num_frames,
            image_size=config.image_size,
            audio_samples=config.num_frames * config.audio_samples_per_frame,
            audio_rate=config.audio_samples_per_frame * PERCEIVER_FPS,
            max_bytes=options.max_bytes,
        )
        return cls(
            perceiver,
            loader,
            model_id=model.model_id,
            policy=policy,
            normalize=options.normalize,
            batch_size=options.batch_size or 2,
            workers=options.workers,
        )

    def loader(self, role: Role) -> PerceiverLoader:
        return self._loader

    def identity_options(self) -> dict[str, Any]:
        return {**super().identity_options(), "frames": self._loader.num_frames}

    def details(self) -> dict[str, Any]:
        return {
            "pooling": "mean of the latents",
            "image_size": self._loader.image_size,
            "audio_rate": self._loader.audio_rate,
            "audio_samples": self._loader.audio_samples,
        }

    def preprocess(self, raws: list[PerceiverClip], role: Role) -> dict[str, torch.Tensor]:
        config: Any = self.module.config  # a transformers config, untyped behind Module.__getattr__
        labels = config.num_labels if hasattr(config, "num_labels") else 700
        return {
            "image": torch.from_numpy(np.stack([raw.frames for raw in raws])),
            "audio": torch.from_numpy(np.stack([raw.audio for raw in raws])),
            # The label input is fully masked by the model (mask_probs label = 1.0): content irrelevant.
            "label": torch.zeros(len(raws), labels),
        }

    def forward(self, batch: dict[str, torch.Tensor], role: Role) -> ModelOutput:
        return ModelOutput(hidden=self.module(inputs=batch).last_hidden_state)  # pooling: mean of latents


class ClipVideoEncoder(VideoEncoder):
    """CLIP frame pooling: frames through the vision tower, mean of unit vectors, renormalised."""

    accepts_text_queries = True

    def __init__(self, clip: ImageTextEncoder, loader: ClipFramesLoader, **kwargs: Any) -> None:
        super().__init__(dim=clip.dim, **kwargs)
        self.clip = clip
        self._loader = loader

    @classmethod
    def build(cls, model: ResolvedModel, policy: DevicePolicy, options: VideoOptions) -> ClipVideoEncoder:
        from multiembed.modalities.image_text import ImageTextEncoder

        if not options.normalize:
            raise ConfigError("normalize=False: CLIP frame pooling is defined on unit vectors")
        clip = ImageTextEncoder.from_pretrained(
            model, policy, trust_remote_code=options.trust_remote_code, workers=0
        )
        loader = ClipFramesLoader(clip.image_transform, options.frames or 8, options.max_bytes)
        return cls(
            clip,
            loader,
            model_id=model.model_id,
            policy=policy,
            batch_size=options.batch_size or 4,
            workers=options.workers,
        )

    def loader(self, role: Role) -> Any:
        return load_text if role == "query" else self._loader

    def identity_options(self) -> dict[str, Any]:
        return {"frames": self._loader.num_frames}

    def details(self) -> dict[str, Any]:
        return {"pooling": "mean of unit frame vectors", **self.clip.details()}

    def preprocess(self, raws: list[Any], role: Role) -> dict[str, Any]:
        if role == "query":
            return self.clip.preprocess(raws, role)
        return {"pixel_values": torch.from_numpy(np.concatenate(raws)), "videos": len(raws)}

    def forward(self, batch: dict[str, Any], role: Role) -> ModelOutput:
        if role == "query":
            return ModelOutput(hidden=self.clip.forward(batch, role).hidden)  # text queries: [B, D]
        frames = self.clip.forward({"pixel_values": batch["pixel_values"]}, role).hidden
        unit = torch.nn.functional.normalize(frames.float(), dim=-1)
        return ModelOutput(hidden=unit.reshape(batch["videos"], -1, unit.shape[-1]))

    def pool(self, output: ModelOutput, batch: Any, role: Role) -> torch.Tensor:
        return output.hidden if role == "query" else output.hidden.mean(dim=1)


SPEC = register(
    ModalitySpec(
        name="video",
        description="video clips (multimodal Perceiver, or CLIP frame pooling for text search)",
        default_model="perceiver",
        models=VIDEO_MODELS,
        extensions=VIDEO_EXTENSIONS,
        # Abstract on purpose: a factory whose from_pretrained returns a concrete subclass, and the
        # registry only ever calls from_pretrained on it (mypy assumes a type[Encoder] is instantiated).
        encoder_class=VideoEncoder,  # type: ignore[type-abstract]
        local_folder=(
            "a PerceiverForMultimodalAutoencoding folder made with .save_pretrained(path) "
            "(config.json, model.safetensors), or a CLIP folder (CLIPModel + CLIPProcessor) for frame pooling"
        ),
    )
)
