"""Image loading shared by the image, image-text and video modalities."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multiembed import InputError
from multiembed.images import ImageLimits, load_image
from tests.image_files import bad_images, good_images, photo


def test_every_format_and_mode_becomes_rgb(tmp_path):
    for path in good_images(tmp_path):
        image, key = load_image(path)
        assert image.mode == "RGB" and image.size == (80, 60), path.name
        assert len(key) == 64


@pytest.mark.parametrize("case", ["truncated", "corrupt", "empty", "text", "bomb", "tiny"])
def test_bad_files_are_input_errors_with_a_reason(tmp_path, case):
    path, reason = next((p, r) for p, r in bad_images(tmp_path).items() if case in p.name)
    with pytest.raises(InputError) as caught:
        load_image(path)
    assert reason in caught.value.reason


def test_paths_bytes_pil_and_arrays_agree(tmp_path):
    picture = photo(3)
    picture.save(tmp_path / "p.png")
    from_path, path_key = load_image(tmp_path / "p.png")
    from_bytes, bytes_key = load_image((tmp_path / "p.png").read_bytes())
    from_pil, _ = load_image(picture)
    from_array, _ = load_image(np.asarray(picture))
    from_floats, _ = load_image(np.asarray(picture) / 255.0)
    for image in (from_bytes, from_pil, from_array, from_floats):
        assert np.array_equal(np.asarray(image), np.asarray(from_path))
    assert path_key == bytes_key


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored 40x20, shown 20x40
    photo(1, (40, 20)).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "rotated.jpg")[0].size == (20, 40)


def test_alpha_goes_over_white_and_16_bit_is_rescaled():
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(load_image(transparent)[0]).min() == 255
    white16 = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert np.asarray(load_image(white16)[0]).min() == 255
    assert np.asarray(load_image(np.full((4, 4), 65535, dtype=np.uint16))[0]).min() == 255


def test_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    red, _, blue = np.asarray(load_image(buffer.getvalue())[0])[0, 0]
    assert red > 200 and blue < 50


def test_pixel_limit_is_configurable():
    with pytest.raises(InputError, match="image too large: 80x60 = 4,800 pixels exceeds the limit of 1,000"):
        load_image(photo(1), ImageLimits(max_pixels=1000))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (42, "expected an image (path, bytes, PIL image or array), got int"),
        (np.zeros((4, 4, 2)), "array of shape (4, 4, 2) is not an image"),
        (np.zeros((1, 1, 3)), "image too small: 1x1 pixels (minimum 2x2)"),
    ],
)
def test_other_values_are_refused(value, reason):
    with pytest.raises(InputError, match=re.escape(reason)):
        load_image(value)


@pytest.mark.parametrize(("size", "ratio"), [((1000, 2), "500"), ((2, 1000), "500"), ((203, 2), "101.5")])
def test_elongated_images_are_refused_with_their_ratio(size, ratio):
    expected = f"image too elongated: {size[0]}x{size[1]} pixels (ratio {ratio}:1, the limit is 100:1)"
    with pytest.raises(InputError, match=re.escape(expected)):
        load_image(Image.new("RGB", size))


def test_the_aspect_ratio_limit_is_inclusive_and_configurable():
    assert load_image(Image.new("RGB", (200, 2)))[0].size == (200, 2)
    with pytest.raises(InputError, match=re.escape("(ratio 4:1, the limit is 3:1)")):
        load_image(photo(1, (80, 20)), ImageLimits(max_aspect_ratio=3))


def test_elongated_jpegs_are_refused_at_the_header_on_the_gpu_decode_path():
    from multiembed.image_tensor_decode import tensor_decodable

    buffer = io.BytesIO()
    Image.new("RGB", (60000, 2)).save(buffer, format="JPEG")
    with pytest.raises(InputError, match=re.escape("image too elongated: 60000x2 pixels (ratio 30000:1")):
        tensor_decodable(buffer.getvalue(), ImageLimits())


def test_an_elongated_png_is_an_item_error_before_the_model_resizes_it(image_models, tmp_path):
    """A 100000x2 PNG (a few KB, 200 k pixels) would become a 1,600,000x32 image in CLIP's resize."""
    import multiembed

    photo(1).save(tmp_path / "a-good.png")
    photo(2, (4000, 1000)).save(tmp_path / "b-panorama.png")
    Image.new("RGB", (100_000, 2), (200, 30, 30)).save(tmp_path / "c-strip.png")
    assert (tmp_path / "c-strip.png").stat().st_size < 10_000
    clip = multiembed.load("image-text", str(image_models["clip"]), device="cpu", workers=0)
    result = clip.encode(sorted(tmp_path.glob("*.png")))
    assert [Path(source).name for source in result.sources] == ["a-good.png", "b-panorama.png"]
    assert [(Path(error.source).name, error.reason) for error in result.errors] == [
        ("c-strip.png", "image too elongated: 100000x2 pixels (ratio 50000:1, the limit is 100:1)")
    ]
