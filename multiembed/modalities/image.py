"""Image modality: the pooled penultimate layer of an image backbone (ResNet-50 by default, 2048-d).

Three libraries, one encoder. Each backbone brings the preprocessing that belongs to its weights
(they differ: torchvision V2 resizes to 232 bilinear, Hugging Face's ResNet to 256 bicubic, timm
uses its own data config), so the vectors equal what that library gives when called directly.
Decoding and the transform run in worker processes (``workers``) ahead of the model, or, with
``gpu_decode`` (torchvision backbones), JPEGs are decoded in batches on the model's device in the main
process (:mod:`multiembed.image_tensor_decode`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from multiembed.device import DevicePolicy
from multiembed.encoder import Encoder, ModelOutput, Role
from multiembed.errors import ConfigError, ModelNotFoundError
from multiembed.extras import require
from multiembed.image_tensor_decode import JpegLoader, TensorTransform, decode_batch
from multiembed.images import (
    DEFAULT_IMAGE_MAX_BYTES,
    IMAGE_EXTENSIONS,
    HFImageTransform,
    ImageLimits,
    ImageLoader,
    image_limits,
    processor_summary,
)
from multiembed.models import ResolvedModel, hub_offline, loading
from multiembed.registry import ModalitySpec, ModelInfo, register

if TYPE_CHECKING:
    import torch

    from multiembed.fast.core import ExportableCore
else:
    from multiembed.lazy import torch

IMAGE_MODELS = (
    ModelInfo(
        alias="resnet50",
        hub_id="torchvision/resnet50",
        dim=2048,
        description="torchvision ResNet-50, IMAGENET1K_V2 weights and transforms",
        source="torchvision",
    ),
    ModelInfo(
        alias="hf-resnet50",
        hub_id="microsoft/resnet-50",
        dim=2048,
        description="Hugging Face ResNet-50 (timm-trained weights), its own image processor",
    ),
)

WEIGHT_SUFFIXES = {".pth", ".pt", ".bin", ".safetensors"}


TRANSFORM_OPTIONS = ("resize_size", "crop_size", "mean", "std", "interpolation")


@dataclass(frozen=True)
class Backbone:
    """What the encoder needs from any library: a module images -> features, and its transform.

    ``options`` are the transform settings a user may pass back to rebuild it (torchvision only);
    ``details`` describe the rest of the preprocessing, for the encoder's recorded identity.
    """

    module: torch.nn.Module
    transform: Callable[[Image.Image], Any]
    library: str
    options: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def _pooled_output(model: torch.nn.Module) -> torch.nn.Module:
    """Hugging Face backbones return an output object; the vector is its pooler output."""

    class PooledOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            pooled: torch.Tensor = self.model(pixel_values=pixel_values).pooler_output
            return pooled

    return PooledOutput()


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Weights only: safetensors, or torch.load with weights_only=True (never arbitrary pickles)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        with loading(str(path), "a safetensors weights file", str(path)):
            return load_file(str(path))
    with loading(str(path), "a weights-only state dict", str(path)):
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ModelNotFoundError(f"{path}: not a state dict (got {type(state).__name__})")
    inner = state.get("state_dict", state)
    return inner if isinstance(inner, dict) else state


def _torchvision_weights(resolved: ResolvedModel) -> dict[str, torch.Tensor]:
    from torchvision.models import ResNet50_Weights  # imported by the caller's require() first

    if resolved.path:
        return load_state_dict_file(Path(resolved.path))
    url = ResNet50_Weights.IMAGENET1K_V2.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if cached.is_file():
        return load_state_dict_file(cached)
    advice = (
        f"torchvision's ResNet-50 IMAGENET1K_V2 weights are not in the cache ({cached}). Put the "
        "file there, or pass --model /path/to/resnet50.pth (a state dict, .pth or .safetensors)"
    )
    if hub_offline():
        raise ModelNotFoundError(advice)
    try:
        return torch.hub.load_state_dict_from_url(url, weights_only=True, check_hash=True)
    except Exception as error:
        raise ModelNotFoundError(f"{advice} (download failed: {type(error).__name__})") from None


def torchvision_resnet50(resolved: ResolvedModel, **transform_options: Any) -> Backbone:
    """torchvision ResNet-50 with ``fc`` replaced by identity; the IMAGENET1K_V2 transforms by default."""
    require("torchvision", "image")
    from torchvision.models import ResNet50_Weights, resnet50
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    model = resnet50(weights=None)
    missing, unexpected = model.load_state_dict(_torchvision_weights(resolved), strict=False)
    if unexpected or any(not key.startswith("fc.") for key in missing):
        raise ModelNotFoundError(
            f"{resolved.model_id}: not a torchvision ResNet-50 state dict "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.fc = torch.nn.Identity()
    preset = ResNet50_Weights.IMAGENET1K_V2.transforms()
    settings = {
        "crop_size": preset.crop_size[0],
        "resize_size": preset.resize_size[0],
        "mean": preset.mean,
        "std": preset.std,
        "interpolation": preset.interpolation,
    }
    settings.update({key: value for key, value in transform_options.items() if value is not None})
    if isinstance(settings["interpolation"], str):
        try:
            settings["interpolation"] = InterpolationMode(settings["interpolation"].lower())
        except ValueError:
            choices = ", ".join(mode.value for mode in InterpolationMode)
            raise ConfigError(
                f"interpolation must be one of {choices}, not {settings['interpolation']!r}"
            ) from None
    try:
        transform = ImageClassification(**settings)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid image transform options {transform_options}: {error}") from None
    options = {
        "resize_size": int(settings["resize_size"]),
        "crop_size": int(settings["crop_size"]),
        "mean": [float(value) for value in settings["mean"]],
        "std": [float(value) for value in settings["std"]],
        "interpolation": InterpolationMode(settings["interpolation"]).value,
    }
    return Backbone(model, transform, "torchvision", options=options)


def _no_transform_options(library: str, transform_options: dict[str, Any]) -> None:
    given = sorted(key for key, value in transform_options.items() if value is not None)
    if given:
        raise ConfigError(
            f"{', '.join(given)}: only torchvision backbones take transform options; a {library} model "
            "uses the preprocessing saved with its weights"
        )


def hf_backbone(resolved: ResolvedModel, trust_remote_code: bool = False) -> Backbone:
    """Any Hugging Face vision backbone: AutoModel's pooled output, the model's own processor."""
    from transformers import AutoImageProcessor, AutoModel

    with loading(resolved.model_id, "a Hugging Face image backbone", resolved.path):
        model = AutoModel.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)
        processor = AutoImageProcessor.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)
    return Backbone(
        _pooled_output(model),
        HFImageTransform(processor),
        "transformers",
        details={"transform": processor_summary(processor)},
    )


def timm_backbone(resolved: ResolvedModel) -> Backbone:
    """Any timm model (``num_classes=0`` gives pooled features) with timm's own data config."""
    timm = require("timm", "image")
    # timm.data re-exports these without __all__; import them from where they are defined.
    from timm.data.config import resolve_data_config
    from timm.data.transforms_factory import create_transform

    with loading(resolved.model_id, "a timm model", resolved.path):
        model = timm.create_model(f"local-dir:{resolved.path}", pretrained=True, num_classes=0)
    data_config = resolve_data_config(model=model)
    return Backbone(model, create_transform(**data_config), "timm", details={"transform": dict(data_config)})


def _is_timm_dir(path: Path) -> bool:
    config = path / "config.json"
    try:
        return "architecture" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def build_backbone(resolved: ResolvedModel, trust_remote_code: bool, **transform_options: Any) -> Backbone:
    """Pick the library from the model id and what the directory holds."""
    path = Path(resolved.path) if resolved.path else None
    if path is None or (path.suffix.lower() in WEIGHT_SUFFIXES and path.is_file()):
        return torchvision_resnet50(resolved, **transform_options)
    if path.is_file():
        raise ModelNotFoundError(
            f"{path}: expected a .pth/.pt/.safetensors weights file or a model directory"
        )
    if resolved.model_id.startswith("timm/") or _is_timm_dir(path):
        _no_transform_options("timm", transform_options)
        return timm_backbone(resolved)
    _no_transform_options("Hugging Face", transform_options)
    return hf_backbone(resolved, trust_remote_code)


def _probe_dim(module: torch.nn.Module, transform: Callable[[Image.Image], Any]) -> int:
    """The vector length, read off one forward pass on a blank image (libraries store it differently)."""
    pixels = torch.as_tensor(np.asarray(transform(Image.new("RGB", (64, 64))), dtype=np.float32))
    with torch.inference_mode():
        return int(module(pixels.unsqueeze(0)).flatten(1).shape[1])


class ImageEncoder(Encoder):
    """Image vectors from a torchvision, Hugging Face or timm backbone."""

    modality = "image"
    pooling = "none"
    decodes_in_workers = True
    sort_window_batches = 1  # images need no size ordering; small windows keep memory flat

    def __init__(
        self,
        backbone: Backbone,
        *,
        model_id: str,
        policy: DevicePolicy,
        normalize: bool = True,
        batch_size: int = 32,
        workers: int | None = None,
        limits: ImageLimits | None = None,
        gpu_decode: bool = False,
    ) -> None:
        if gpu_decode and backbone.library != "torchvision":
            raise ConfigError(
                f"gpu_decode needs a torchvision backbone (its transform is plain tensor ops); a "
                f"{backbone.library} model's preprocessing runs on PIL images only"
            )
        dim = _probe_dim(backbone.module.eval(), backbone.transform)
        super().__init__(
            model_id=model_id,
            dim=dim,
            policy=policy,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
        )
        self.module = policy.place(backbone.module, channels_last=True)
        self.backbone = backbone
        self._pil_loader = ImageLoader(backbone.transform, limits or ImageLimits())
        #: set with ``gpu_decode``: JPEGs decoded and transformed on the device in ``preprocess``
        self._tensor_transform = TensorTransform(**backbone.options) if gpu_decode else None
        self._loader: ImageLoader | JpegLoader = (
            JpegLoader(self._pil_loader) if gpu_decode else self._pil_loader
        )

    @classmethod
    def from_pretrained(
        cls,
        model: ResolvedModel,
        policy: DevicePolicy,
        *,
        trust_remote_code: bool = False,
        normalize: bool = True,
        batch_size: int = 32,
        workers: int | None = None,
        max_pixels: int | None = None,
        max_bytes: int | None = DEFAULT_IMAGE_MAX_BYTES,
        resize_size: int | None = None,
        crop_size: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        interpolation: str | None = None,
        gpu_decode: bool = False,
    ) -> ImageEncoder:
        """The transform options (torchvision backbones only) override the weights' own preset.

        ``gpu_decode=True`` (torchvision backbones; meant for CUDA, allowed on the CPU) decodes JPEGs
        with ``torchvision.io.decode_jpeg`` in batches on the device, in the main process, and runs
        the transform there as tensor ops; other files keep the PIL path. Vectors differ slightly
        from PIL's (resize rounding), so the option is part of the identity.
        """
        transform_options = {
            "resize_size": resize_size,
            "crop_size": crop_size,
            "mean": mean,
            "std": std,
            "interpolation": interpolation,
        }
        backbone = build_backbone(model, trust_remote_code, **transform_options)
        limits = image_limits(max_pixels, max_bytes)
        return cls(
            backbone,
            model_id=model.model_id,
            policy=policy,
            normalize=normalize,
            batch_size=batch_size,
            workers=workers,
            limits=limits,
            gpu_decode=gpu_decode,
        )

    def loader(self, role: Role) -> ImageLoader | JpegLoader:
        return self._loader

    def identity_options(self) -> dict[str, Any]:
        # recorded only when on, so identities saved before the option existed still match
        gpu = {"gpu_decode": True} if self._tensor_transform is not None else {}
        return {**super().identity_options(), **self.backbone.options, **gpu}

    def details(self) -> dict[str, Any]:
        return {"pooling": "backbone", "library": self.backbone.library, **self.backbone.details}

    def preprocess(self, raws: list[Any], role: Role) -> torch.Tensor:
        if self._tensor_transform is not None:
            return decode_batch(raws, self._tensor_transform, self._pil_loader, self.device)
        return torch.from_numpy(np.stack(raws)).contiguous(memory_format=torch.channels_last)

    def forward(self, batch: torch.Tensor, role: Role) -> ModelOutput:
        return ModelOutput(hidden=self.module(batch).flatten(1))

    def exportable_core(self) -> ExportableCore:
        """The whole backbone (pixels -> pooled features), for every library; calibrated on drawn images."""
        from multiembed.fast.core import ExportableCore
        from multiembed.fast.corpus import sample_images

        return ExportableCore(
            module=self.module,
            input_names=("pixel_values",),
            run=lambda module, inputs: module(inputs["pixel_values"]).flatten(1),
            inputs=lambda batch: {"pixel_values": batch},
            output=lambda hidden, batch: ModelOutput(hidden=hidden),
            documents=sample_images(48),
            queries=sample_images(12, seed=7),
            transformer=False,
        )


SPEC = register(
    ModalitySpec(
        name="image",
        description="photos and pictures (ResNet-50 penultimate layer, or any HF/timm backbone)",
        default_model="resnet50",
        models=IMAGE_MODELS,
        extensions=IMAGE_EXTENSIONS,
        encoder_class=ImageEncoder,
        local_folder=(
            "a torchvision ResNet-50 state dict (torch.save(resnet50(weights=...).state_dict(), "
            "'resnet50.pth'), or .safetensors), a Hugging Face folder made with AutoModel and "
            "AutoImageProcessor .save_pretrained(path) (config.json, model.safetensors, "
            "preprocessor_config.json), or a timm folder"
        ),
    )
)
