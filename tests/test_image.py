"""Image modality: parity with torchvision / transformers / timm called directly, workers, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import multiembed
from multiembed.cli import main
from tests.image_files import bad_images, good_images

PARITY = 1e-5


def normalized(features: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(features.flatten(1), dim=-1).numpy()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list:
    return good_images(tmp_path_factory.mktemp("good"))[:6]


def rgb(path) -> Image.Image:
    return Image.open(path).convert("RGB")


def test_torchvision_resnet50_matches_a_hand_written_reference(image_models, images):
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50()
    model.load_state_dict(torch.load(image_models["torchvision"], weights_only=True))
    model.fc = torch.nn.Identity()
    transform = ResNet50_Weights.IMAGENET1K_V2.transforms()
    with torch.inference_mode():
        expected = normalized(model.eval()(torch.stack([transform(rgb(p)) for p in images])))
    encoder = multiembed.load("image", str(image_models["torchvision"]), device="cpu", workers=0)
    assert encoder.dim == 2048
    ours = encoder.encode(images).vectors
    assert ours.shape == (len(images), 2048)
    assert np.abs(ours - expected).max() <= PARITY


def test_safetensors_weights_file_gives_the_same_vectors(image_models, images, tmp_path):
    from tests.tiny_models import resnet50_state_dict_file

    pth = multiembed.load("image", str(image_models["torchvision"]), device="cpu", workers=0)
    safetensors = resnet50_state_dict_file(tmp_path, suffix=".safetensors")
    other = multiembed.load("image", str(safetensors), device="cpu", workers=0)
    np.testing.assert_allclose(pth.encode(images[:2]).vectors, other.encode(images[:2]).vectors, atol=1e-6)


def test_user_preprocessing_settings_override_the_preset(image_models, images):
    default = multiembed.load("image", str(image_models["torchvision"]), device="cpu", workers=0)
    v1 = multiembed.load(
        "image", str(image_models["torchvision"]), device="cpu", workers=0, resize_size=256, crop_size=224
    )
    assert np.abs(default.encode(images[:1]).vectors - v1.encode(images[:1]).vectors).max() > 1e-4


def test_hugging_face_backbone_matches_automodel(image_models, images):
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(image_models["hf"])
    model = AutoModel.from_pretrained(image_models["hf"]).eval()
    with torch.inference_mode():
        pixels = processor(images=[rgb(p) for p in images], return_tensors="pt")["pixel_values"]
        expected = normalized(model(pixel_values=pixels).pooler_output)
    encoder = multiembed.load("image", str(image_models["hf"]), device="cpu", workers=0)
    assert np.abs(encoder.encode(images).vectors - expected).max() <= PARITY


def test_timm_model_matches_timm_with_its_data_config(image_models, images):
    import timm
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model(f"local-dir:{image_models['timm']}", pretrained=True, num_classes=0).eval()
    transform = create_transform(**resolve_data_config(model=model))
    with torch.inference_mode():
        expected = normalized(model(torch.stack([transform(rgb(p)) for p in images])))
    encoder = multiembed.load("image", str(image_models["timm"]), device="cpu", workers=0)
    assert np.abs(encoder.encode(images).vectors - expected).max() <= PARITY


def test_worker_processes_give_the_same_vectors_in_order(image_models, tmp_path):
    paths = good_images(tmp_path / "good") * 3
    bad = list(bad_images(tmp_path / "bad"))
    inputs = [*paths[:10], *bad, *paths[10:]]
    serial = multiembed.load("image", str(image_models["hf"]), device="cpu", workers=0, batch_size=4)
    parallel = multiembed.load("image", str(image_models["hf"]), device="cpu", workers=2, batch_size=4)
    a, b = serial.encode(inputs), parallel.encode(iter(inputs))  # a generator has no len: workers run
    assert a.indices == b.indices and a.sources == b.sources and a.ids == b.ids
    assert [e.index for e in b.errors] == list(range(10, 10 + len(bad)))
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)


def test_missing_torchvision_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    missing = r"ResNet-50 IMAGENET1K_V2 weights are not in the cache \(.*resnet50-\w+\.pth\)"
    with pytest.raises(multiembed.ModelNotFoundError, match=missing):
        multiembed.load("image", device="cpu")


def test_wrong_weights_file_is_refused(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(multiembed.ModelNotFoundError, match="not a torchvision ResNet-50 state dict"):
        multiembed.load("image", str(tmp_path / "other.pth"), device="cpu")


def test_cli_folder_with_bad_files(image_models, photo_folder, tmp_path, capsys):
    out = tmp_path / "photos.jsonl"
    code = main(["encode", "--modality", "image", str(photo_folder), "-o", str(out),
                 "--model", str(image_models["hf"]), "--workers", "1", "-q"])  # fmt: skip
    assert code == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    written = {row["source"] for row in rows}
    expected_good = {str(p) for p in good_images(tmp_path / "same-names")}
    assert {name.rsplit("/", 1)[-1] for name in written} == {p.rsplit("/", 1)[-1] for p in expected_good}
    err = capsys.readouterr().err
    for path, reason in bad_images(tmp_path / "reasons").items():
        line = next(
            line for line in err.splitlines() if line.startswith(f"failed: {photo_folder / path.name}")
        )
        assert reason in line
    assert f"embedded {len(rows)} of {len(rows) + 6} items, 6 failed" in err
    assert ".hidden" not in err + out.read_text() and "notes.txt" not in err


@pytest.mark.parametrize("workers", [0, 2])
def test_encoding_streams_instead_of_collecting(image_models, tmp_path, workers):
    """Memory stays flat: only a bounded number of files is read ahead of the first result."""
    paths = good_images(tmp_path)
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            for path in paths:
                pulled += 1
                yield path

    encoder = multiembed.load("image", str(image_models["hf"]), device="cpu", workers=workers, batch_size=4)
    parts = encoder.iter_encode(endless())
    first = next(parts)
    assert len(first) == 4
    in_flight = 2 * workers + 1 if workers else 0
    assert pulled <= 4 * (in_flight + 2)
    parts.close()  # stops the workers
