"""``gpu_decode``: JPEGs decoded by torchvision on the device, checked on the CPU against the PIL path.

On the CPU ``decode_jpeg`` runs libjpeg, the same code path as nvjpeg's caller, so the batching,
fallbacks and error naming are covered here; only the decoder library differs on CUDA.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import multiembed
from tests.image_files import photo

#: the tensor resize rounds differently from PIL's; anything below this would be a real mismatch
MIN_COSINE = 0.999
#: sizes around and far from the 232 resize / 224 crop: downscale, upscale, portrait, odd sides
SIZES = [(640, 480), (300, 240), (80, 60), (333, 500), (1024, 683), (231, 225)]


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> list:
    folder = tmp_path_factory.mktemp("jpegs")
    paths = []
    for seed, size in enumerate(SIZES):
        path = folder / f"photo_{seed}.jpg"
        photo(seed, size).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def encoders(image_models) -> tuple:
    model = str(image_models["torchvision"])
    default = multiembed.load("image", model, device="cpu", workers=0, batch_size=8)
    gpu = multiembed.load("image", model, device="cpu", workers=0, batch_size=8, gpu_decode=True)
    return default, gpu


def test_tensor_decode_matches_the_pil_path_on_jpegs(encoders, jpegs):
    default, gpu = encoders
    expected, ours = default.encode(jpegs), gpu.encode(jpegs)
    assert not ours.errors and ours.ids == expected.ids  # same content keys: sha256 of the file
    cosines = np.sum(expected.vectors * ours.vectors, axis=1)  # both L2-normalised
    gap = np.abs(expected.vectors - ours.vectors).max()
    print(f"gpu_decode on CPU vs PIL: 1 - min cosine {1 - cosines.min():.1e}, max |diff| {gap:.1e}")
    assert cosines.min() >= MIN_COSINE
    assert not np.array_equal(expected.vectors, ours.vectors)  # the tensor path really ran
    # The fixture's weights are random, so even different images are close (min cosine ~0.9986):
    # the two paths must be far closer to each other than any two images are.
    between_images = float((expected.vectors @ expected.vectors.T).min())
    assert 1 - cosines.min() < 0.01 * (1 - between_images)


def test_tensor_transform_pixels_differ_from_pil_by_rounding_only(encoders, jpegs):
    """The weights-independent check: the model inputs, in 0..255 levels, at most one level apart."""
    default, gpu = encoders
    pil = default.preprocess([default.load(path, "document").raw for path in jpegs], "document")
    tensor = gpu.preprocess([gpu.load(path, "document").raw for path in jpegs], "document")
    std = torch.tensor(default.backbone.options["std"]).view(1, 3, 1, 1)
    levels = ((pil - tensor).abs() * std * 255).flatten(1)
    cosine = torch.nn.functional.cosine_similarity(pil.flatten(1), tensor.flatten(1))
    print(f"pixels: max {levels.max():.3f} levels, mean {levels.mean():.5f}, min cosine {cosine.min():.8f}")
    assert levels.max() <= 1.0 + 1e-3 and levels.mean() < 0.05
    assert cosine.min() >= 0.9999


def test_other_files_take_the_pil_path_and_a_corrupt_jpeg_is_its_own_error(encoders, jpegs, tmp_path):
    default, gpu = encoders
    png, cmyk, grey = tmp_path / "b.png", tmp_path / "cmyk.jpg", tmp_path / "grey.jpg"
    photo(40, (300, 200)).save(png)
    photo(41, (300, 200)).convert("CMYK").save(cmyk)
    photo(42, (300, 200)).convert("L").save(grey)
    whole = io.BytesIO()
    photo(43, (400, 300)).save(whole, format="JPEG")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    inputs = [jpegs[0], png, corrupt, cmyk, jpegs[1], grey]

    ours = gpu.encode(inputs)
    assert [error.source for error in ours.errors] == [str(corrupt)]
    assert ours.errors[0].reason.startswith("corrupt or truncated image (image file is truncated")
    assert ours.indices == [0, 1, 3, 4, 5]
    pil_only = default.encode([png, cmyk, grey])
    by_source = dict(zip(ours.sources, ours.vectors, strict=True))
    for path, vector in zip([png, cmyk, grey], pil_only.vectors, strict=True):
        np.testing.assert_allclose(by_source[str(path)], vector, rtol=0, atol=1e-6)


def test_bytes_and_pil_images_are_accepted_too(encoders, jpegs):
    default, gpu = encoders
    data = jpegs[2].read_bytes()
    ours = gpu.encode([data, Image.open(jpegs[2]).convert("RGB")])
    reference = default.encode([data])
    assert ours.ids[0] == reference.ids[0]
    assert float(ours.vectors[0] @ reference.vectors[0]) >= MIN_COSINE


def test_config_records_gpu_decode(encoders):
    default, gpu = encoders
    assert gpu.config()["options"]["gpu_decode"] is True
    assert "gpu_decode" not in default.config()["options"]  # identities saved before it still match
    assert {**default.config()["options"], "gpu_decode": True} == gpu.config()["options"]


def test_hugging_face_backbones_are_refused(image_models):
    with pytest.raises(multiembed.ConfigError, match="gpu_decode needs a torchvision backbone"):
        multiembed.load("image", str(image_models["hf"]), device="cpu", workers=0, gpu_decode=True)
