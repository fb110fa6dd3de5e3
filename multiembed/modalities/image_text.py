"""Image-text modality: CLIP, both towers projected and L2-normalised into one space.

Documents are images (vision tower), queries are texts (text tower, truncated to the model's
length), so ``encode_queries(["a red bicycle"])`` can be compared with ``encode_documents(photos)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ModelNotFoundError
from multiembed.images import (
    DEFAULT_IMAGE_MAX_BYTES,
    IMAGE_EXTENSIONS,
    HFImageTransform,
    ImageLimits,
    ImageLoader,
    image_limits,
    processor_summary,
)
from multiembed.models import ResolvedModel, loading
from multiembed.registry import ModalitySpec, ModelInfo, register
from multiembed.sources import Loaded
from multiembed.texts import cut_for_tokenizer, load_text

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

CLIP_MODELS = (
    ModelInfo(
        alias="clip",
        hub_id="openai/clip-vit-base-patch32",
        dim=512,
        description="OpenAI CLIP ViT-B/32: images and texts in one space",
    ),
    ModelInfo(
        alias="clip-large",
        hub_id="openai/clip-vit-large-patch14",
        dim=768,
        description="OpenAI CLIP ViT-L/14: slower, stronger",
    ),
)


class ImageTextEncoder(Encoder):
    """CLIP: ``encode_documents(images)`` and ``encode_queries(texts)`` land in the same space."""

    modality = "image-text"
    accepts_text_queries = True
    pooling = "none"  # CLIP's projection heads already give one vector per item
    decodes_in_workers = True
    sort_window_batches = 1

    def __init__(
        self,
        model: Any,
        image_processor: Any,
        tokenizer: Any,
        *,
        model_id: str,
        policy: DevicePolicy,
        batch_size: int = 32,
        workers: int | None = None,
        limits: ImageLimits | None = None,
    ) -> None:
        super().__init__(
            model_id=model_id,
            dim=int(model.config.projection_dim),
            policy=policy,
            normalize=True,  # the shared space is defined on the unit sphere
            batch_size=batch_size,
            workers=workers,
        )
        #: a transformers CLIP model: its ``get_*_features`` are not part of ``torch.nn.Module``
        self.model: Any = policy.place(model)
        self.tokenizer = tokenizer
        self.max_text_length = int(model.config.text_config.max_position_embeddings)
        self._image_transform = HFImageTransform(image_processor)
        self._image_loader = ImageLoader(self._image_transform, limits or ImageLimits())

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        trust_remote_code: bool = False,
        batch_size: int = 32,
        workers: int | None = None,
        max_pixels: int | None = None,
        max_bytes: int | None = DEFAULT_IMAGE_MAX_BYTES,
    ) -> ImageTextEncoder:
        """Load a CLIP directory: model, image processor and tokenizer saved side by side."""
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        with loading(model.model_id, "a CLIP model", model.path):
            clip = AutoModel.from_pretrained(model.path, trust_remote_code=trust_remote_code)
            processor = AutoImageProcessor.from_pretrained(model.path, trust_remote_code=trust_remote_code)
            tokenizer = AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust_remote_code)
        if not hasattr(clip, "get_image_features") or not hasattr(clip, "get_text_features"):
            raise ModelNotFoundError(f"{model.model_id}: not a CLIP-style model (needs both towers)")
        return cls(
            clip,
            processor,
            tokenizer,
            model_id=model.model_id,
            policy=policy,
            batch_size=batch_size,
            workers=workers,
            limits=image_limits(max_pixels, max_bytes),
        )

    @property
    def image_transform(self) -> HFImageTransform:
        """CLIP's image preprocessing, for modalities that feed it frames (video)."""
        return self._image_transform

    def loader(self, role: Role) -> Callable[[Any], Loaded]:
        return load_text if role == "query" else self._image_loader

    def size_of(self, raw: Any) -> int:
        return len(raw) if isinstance(raw, str) else 0

    def preprocess(self, raws: list[Any], role: Role) -> dict[str, torch.Tensor]:
        if role == "query":
            texts = [cut_for_tokenizer(text, self.tokenizer, self.max_text_length) for text in raws]
            tokens = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_text_length, return_tensors="pt"
            )
            return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
        return {"pixel_values": torch.from_numpy(np.stack(raws))}

    def identity_options(self) -> dict[str, Any]:
        return {}  # always normalised: the shared space is defined on the unit sphere

    def details(self) -> dict[str, Any]:
        return {
            "pooling": "projection",
            "max_text_length": self.max_text_length,
            "image_transform": processor_summary(self.image_transform.processor),
        }

    def forward(self, batch: dict[str, torch.Tensor], role: Role) -> ModelOutput:
        if role == "query":
            output = self.model.get_text_features(**batch)
        else:
            output = self.model.get_image_features(pixel_values=batch["pixel_values"])
        features = output if isinstance(output, torch.Tensor) else output.pooler_output
        return ModelOutput(hidden=features)


SPEC = register(
    ModalitySpec(
        name="image-text",
        description="images and texts in one space, for cross-modal search (CLIP)",
        default_model="clip",
        models=CLIP_MODELS,
        extensions=IMAGE_EXTENSIONS,
        encoder_class=ImageTextEncoder,
        local_folder=(
            "a CLIP folder made with CLIPModel and CLIPProcessor .save_pretrained(path) "
            "(config.json, model.safetensors, preprocessor_config.json, tokenizer files)"
        ),
    )
)
