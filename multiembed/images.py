"""Decoding images for every image-consuming modality (image, image-text, video frames).

One function turns a path, bytes, a PIL image or a numpy array into an RGB PIL image and its content
key, and turns everything that is not a usable image into an :class:`InputError` with the reason:
empty or truncated files, non-images, decompression bombs, degenerate sizes and shapes. EXIF orientation is
applied; palette, grey, alpha, CMYK and 16-bit images become 8-bit RGB (alpha over white).
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from multiembed.errors import InputError
from multiembed.sources import Loaded, read_bytes, sha256_hex

#: the only decoders PIL may use: a hostile "x.jpg" that is really EPS never reaches Ghostscript
PIL_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

#: PIL's own bomb threshold (2 x MAX_IMAGE_PIXELS); anything larger is refused before decoding.
DEFAULT_MAX_PIXELS = 178_956_970
MIN_SIDE = 2
#: The longest side may be at most this many times the shortest. Every model resizes the *shortest*
#: edge to its input size (32 to ~500) before cropping, so the intermediate it builds is about
#: ``size**2 * ratio`` pixels whatever the file's own pixel count: a 6 KB 1,000,000x2 PNG passes
#: ``max_pixels`` (2 M pixels) and then becomes a 16,000,000x32 image (+4.7 GB, seconds) for a
#: tiny CLIP, 7x that for a real one. At 100:1 that intermediate stays below ~100 x 512**2 = 26 M
#: pixels for any usual model, while real pictures stay far inside it: 360 degree panoramas are
#: 2:1 to ~8:1, stitched phone panoramas and full-page screenshots rarely pass 20-50:1.
MAX_ASPECT_RATIO = 100
DEFAULT_IMAGE_MAX_BYTES = 256 * 1024 * 1024

#: what an image processor's saved settings say about the pixels a model sees (its identity)
_PROCESSOR_KEYS = (
    "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
    "do_normalize", "image_mean", "image_std", "do_convert_rgb", "crop_pct",
)  # fmt: skip
_truncation_lock = threading.Lock()


@contextlib.contextmanager
def _refuse_truncated() -> Iterator[None]:
    """A truncated file must be an error, never a silently grey-padded image.

    PIL's switch is process-wide; the host application may have turned it on for its own reasons,
    so it is forced off only while multiembed decodes, and put back afterwards.
    """
    with _truncation_lock:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def processor_summary(processor: Any) -> dict[str, Any]:
    """The settings of a Hugging Face image processor that change its output, JSON-able."""
    settings = processor.to_dict() if hasattr(processor, "to_dict") else {}
    return {key: settings[key] for key in _PROCESSOR_KEYS if key in settings}


@dataclass(frozen=True)
class ImageLimits:
    """Bounds that protect a run from hostile or broken files."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = MIN_SIDE
    #: longest side / shortest side; see :data:`MAX_ASPECT_RATIO` for why elongation is bounded
    max_aspect_ratio: float = MAX_ASPECT_RATIO
    #: files bigger than this are refused before they are read
    max_bytes: int | None = DEFAULT_IMAGE_MAX_BYTES


def image_limits(
    max_pixels: int | None = None, max_bytes: int | None = DEFAULT_IMAGE_MAX_BYTES
) -> ImageLimits:
    """Limits from the options users pass (``max_pixels=None`` keeps PIL's bomb threshold)."""
    return ImageLimits(max_pixels=max_pixels or DEFAULT_MAX_PIXELS, max_bytes=max_bytes)


def _array_to_image(array: np.ndarray) -> Image.Image:
    """HxW, HxWx1/3/4 arrays; floats are taken as 0..1, integers wider than 8 bits are rescaled."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(f"array of shape {array.shape} is not an image (want HxW, HxWx3 or HxWx4)")
    if np.issubdtype(array.dtype, np.floating):
        array = np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0
    elif array.dtype != np.uint8:
        top = np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 255
        array = array.astype(np.float64) * (255.0 / top)
    return Image.fromarray(np.ascontiguousarray(array.round().astype(np.uint8)))


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB whatever the mode: 16/32-bit are rescaled (not clipped), alpha goes over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        if image.mode == "F":
            top = max(float(array.max()), 1.0)
        image = Image.fromarray(np.clip(array * (255.0 / top), 0, 255).round().astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _ratio_text(ratio: float) -> str:
    """``50000`` or ``100.5``: a ratio as people write it, without a useless ``.0``."""
    return f"{ratio:.1f}".rstrip("0").rstrip(".")


def _check_size(width: int, height: int, limits: ImageLimits) -> None:
    """Refuse an image from its header size alone, before any pixel or resized copy is allocated.

    The elongation check is what bounds the model's resized intermediate (see MAX_ASPECT_RATIO);
    the pixel count alone does not, since the resize scales the shortest edge up.
    """
    if width * height > limits.max_pixels:
        raise InputError(
            f"image too large: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{limits.max_pixels:,} (possible decompression bomb)"
        )
    if min(width, height) < limits.min_side:
        raise InputError(
            f"image too small: {width}x{height} pixels (minimum {limits.min_side}x{limits.min_side})"
        )
    ratio = max(width, height) / max(min(width, height), 1)  # min_side=0 must not divide by zero
    if ratio > limits.max_aspect_ratio:
        raise InputError(
            f"image too elongated: {width}x{height} pixels (ratio {_ratio_text(ratio)}:1, "
            f"the limit is {_ratio_text(limits.max_aspect_ratio)}:1)"
        )


def _decode(data: bytes, limits: ImageLimits) -> Image.Image:
    if not data:
        raise InputError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own header check below enforces max_pixels; PIL's softer warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
            _check_size(*image.size, limits)  # header only: refuse bombs before decoding pixels
            image.seek(0)  # GIF / multi-page TIFF: the first frame
            with _refuse_truncated():
                image.load()
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError("not an image, or an unsupported image format") from None
    except Image.DecompressionBombError as error:
        raise InputError(f"image too large, possible decompression bomb ({error})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        reason = str(error) or type(error).__name__
        raise InputError(f"corrupt or truncated image ({reason})") from None
    return ImageOps.exif_transpose(image)


def load_image(value: Any, limits: ImageLimits = ImageLimits()) -> tuple[Image.Image, str]:
    """An RGB PIL image and its content key (sha256 of the file bytes / pixels)."""
    if isinstance(value, str):
        value = Path(value)
    if isinstance(value, Path):
        value = read_bytes(value, limits.max_bytes)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return _to_rgb(_decode(data, limits)), sha256_hex(data)
    if isinstance(value, Image.Image):
        _check_size(*value.size, limits)
        image = _to_rgb(value)
    elif isinstance(value, np.ndarray):
        image = _array_to_image(value)
        _check_size(*image.size, limits)
    else:
        raise InputError(f"expected an image (path, bytes, PIL image or array), got {type(value).__name__}")
    return image, sha256_hex(f"{image.size}".encode() + image.tobytes())


@dataclass(frozen=True)
class HFImageTransform:
    """A Hugging Face image processor applied to one image (it processes each image alone anyway)."""

    processor: Any

    def __call__(self, image: Image.Image) -> Any:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


@dataclass(frozen=True)
class ImageLoader:
    """Decode + the model's own transform for one item; holds no model, so it runs in workers.

    Returns a float32 CHW numpy array: cheap to send between processes, stacked by preprocess.
    """

    transform: Callable[[Image.Image], Any]
    limits: ImageLimits = field(default_factory=ImageLimits)

    def __call__(self, value: Any) -> Loaded:
        image, key = load_image(value, self.limits)
        return Loaded(np.asarray(self.transform(image), dtype=np.float32), key)
