"""The image modality's ``gpu_decode`` path: JPEGs decoded in batches by torchvision on the model's device.

On CUDA, ``torchvision.io.decode_jpeg`` with a list decodes the whole batch with nvjpeg, and the
torchvision preset (resize, center crop, scale, normalize) runs as tensor ops on the GPU, so a GPU
no longer needs ~15 CPU cores of PIL decoding to be fed (README, Ray sizing). It is written for
CUDA devices; on the CPU the same call runs libjpeg, which is how it is tested here (no GPU).

The loader only reads the file and checks its header (size limits, that it is a plain 3-channel
JPEG with no EXIF rotation), so it is cheap wherever it runs; the decode itself happens in the
main process, in ``preprocess``. Everything the tensor path cannot take (PNG and other formats,
greyscale, CMYK, rotated JPEGs, a JPEG the decoder refuses) goes through the PIL path for that item
alone, never failing the batch; a file that PIL refuses too becomes that item's error.

The tensor resize (antialiased, like PIL's) differs from PIL's by rounding only, so vectors differ
slightly (min cosine measured >= 0.999): ``gpu_decode`` is part of the encoder's identity.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from multiembed.errors import InputError
from multiembed.failures import is_device_failure
from multiembed.images import ImageLimits, ImageLoader, _check_size
from multiembed.sources import Loaded, read_bytes, sha256_hex

if TYPE_CHECKING:
    import torch
else:
    from multiembed.lazy import torch

JPEG_MAGIC = b"\xff\xd8\xff"
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class JpegBytes:
    """A JPEG file's bytes, checked at the header, waiting to be decoded with its batch."""

    data: bytes


def tensor_decodable(data: bytes, limits: ImageLimits) -> bool:
    """Whether ``decode_jpeg`` in RGB mode gives what the PIL path would: a plain 3-channel JPEG.

    Greyscale and CMYK JPEGs (PIL converts them its own way), and EXIF-rotated ones (nvjpeg does not
    apply the orientation) go to PIL. The size limits are enforced here, before any pixel is decoded,
    with the PIL path's own error.
    """
    if not data.startswith(JPEG_MAGIC):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=("JPEG",))  # header only
            mode, size, orientation = image.mode, image.size, image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # the PIL path gives the reason
        return False
    _check_size(*size, limits)
    return mode == "RGB" and orientation == 1


@dataclass(frozen=True)
class JpegLoader:
    """Bytes for plain JPEGs, the PIL path's pixels for everything else; holds no model (workers)."""

    fallback: ImageLoader

    def __call__(self, value: Any) -> Loaded:
        if isinstance(value, str):
            value = Path(value)
        if isinstance(value, Path):
            value = read_bytes(value, self.fallback.limits.max_bytes)
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if tensor_decodable(data, self.fallback.limits):
                return Loaded(JpegBytes(data), sha256_hex(data))
            value = data
        return self.fallback(value)


@dataclass(frozen=True)
class TensorTransform:
    """The torchvision ``ImageClassification`` preset as tensor ops, on whatever device the pixels are."""

    resize_size: int
    crop_size: int
    mean: list[float]
    std: list[float]
    interpolation: str

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 CHW in, normalised float32 CHW out: the preset's steps, in the preset's order."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        mode = InterpolationMode(self.interpolation)
        pixels = F.resize(pixels, [self.resize_size], interpolation=mode, antialias=True)
        pixels = F.center_crop(pixels, [self.crop_size])
        pixels = F.to_dtype(pixels, torch.float32, scale=True)
        normalized: torch.Tensor = F.normalize(pixels, mean=self.mean, std=self.std)
        return normalized


def _decode(datas: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """All at once (one nvjpeg batch on CUDA); item by item when that fails, None where one fails."""
    from torchvision.io import ImageReadMode, decode_jpeg

    def run(tensors: list[torch.Tensor]) -> list[torch.Tensor | None]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deprecated.*", category=DeprecationWarning)
            return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))

    tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    if not tensors:
        return []
    try:
        return run(tensors)
    except RuntimeError as error:
        if is_device_failure(error):
            raise
    decoded: list[torch.Tensor | None] = []
    for tensor in tensors:
        try:
            decoded.append(run([tensor])[0])
        except RuntimeError as error:
            if is_device_failure(error):
                raise
            decoded.append(None)
    return decoded


def decode_batch(
    raws: list[Any], transform: TensorTransform, fallback: ImageLoader, device: torch.device
) -> torch.Tensor:
    """One channels-last float32 batch on ``device`` from JPEG bytes and PIL-path pixels, in order.

    A JPEG the decoder refuses is decoded by PIL; if PIL refuses it too, its InputError fails this
    batch, and the encoder's isolation retries the halves so only that item becomes an error.
    """
    jpegs = [raw.data for raw in raws if isinstance(raw, JpegBytes)]
    decoded = iter(_decode(jpegs, device))
    items: list[torch.Tensor] = []
    for raw in raws:
        if isinstance(raw, JpegBytes):
            pixels = next(decoded)
            if pixels is not None:
                items.append(transform(pixels))
                continue
            raw = fallback(raw.data).raw
        if not isinstance(raw, np.ndarray):
            raise InputError(f"not a decoded image: {type(raw).__name__}")
        items.append(torch.from_numpy(raw).to(device))
    return torch.stack(items).contiguous(memory_format=torch.channels_last)
