"""Image-text modality (CLIP): both towers against CLIPModel called directly, and the CLI."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import multiembed
from multiembed.cli import main
from tests.image_files import good_images

PARITY = 1e-5
QUERIES = ["a red bicycle", "a brick wall", "x" * 400]  # the last one is longer than 77 tokens


@pytest.fixture(scope="module")
def clip(image_models):
    return multiembed.load("image-text", str(image_models["clip"]), device="cpu", workers=0)


@pytest.fixture(scope="module")
def reference(image_models):
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    path = image_models["clip"]
    return (
        CLIPModel.from_pretrained(path).eval(),
        AutoImageProcessor.from_pretrained(path),
        (AutoTokenizer.from_pretrained(path)),
    )


def unit(output) -> np.ndarray:
    features = output if isinstance(output, torch.Tensor) else output.pooler_output
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def test_images_match_get_image_features(clip, reference, tmp_path):
    model, processor, _ = reference
    paths = good_images(tmp_path)[:6]  # 8-bit RGB files, which a plain .convert("RGB") decodes right
    with torch.inference_mode():
        pixels = processor(images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt")
        expected = unit(model.get_image_features(pixel_values=pixels["pixel_values"]))
    ours = np.stack(clip.encode_documents(paths))
    assert ours.shape == (len(paths), clip.dim) == (len(paths), 16)
    assert np.abs(ours - expected).max() <= PARITY


def test_texts_match_get_text_features_with_truncation(clip, reference):
    model, _, tokenizer = reference
    with torch.inference_mode():
        tokens = tokenizer(QUERIES, padding=True, truncation=True, max_length=77, return_tensors="pt")
        expected = unit(model.get_text_features(**tokens))
    ours = np.stack(clip.encode_queries(QUERIES))
    assert np.abs(ours - expected).max() <= PARITY


def test_image_text_similarities_equal_clip_logits_per_image(clip, image_models, tmp_path):
    """The shared space, checked against CLIPModel's own forward: logits_per_image is
    logit_scale.exp() x cosine(image, text), so dividing by the scale must give our dot products."""
    from transformers import CLIPModel, CLIPProcessor

    path = image_models["clip"]
    model = CLIPModel.from_pretrained(path).eval()
    processor = CLIPProcessor.from_pretrained(path)
    paths = good_images(tmp_path)[:6]
    inputs = processor(
        text=QUERIES,
        images=[Image.open(p).convert("RGB") for p in paths],
        padding=True,
        truncation=True,
        max_length=77,
        return_tensors="pt",
    )
    with torch.inference_mode():
        output = model(
            input_ids=inputs["input_ids"],
            pixel_values=inputs["pixel_values"],
            attention_mask=inputs["attention_mask"],
        )
        expected = (output.logits_per_image / model.logit_scale.exp()).numpy()
    scores = np.stack(clip.encode_documents(paths)) @ np.stack(clip.encode_queries(QUERIES)).T
    assert expected.shape == scores.shape == (len(paths), len(QUERIES))
    assert np.abs(scores - expected).max() <= PARITY
    assert np.ptp(expected) > 0.1  # the scores differ enough that a mix-up of rows or columns shows


def test_bad_queries_and_images_are_item_errors(clip):
    result = clip.encode(["", "a red bicycle", 7], role="query")
    assert result.indices == [1] and [e.reason for e in result.errors] == [
        "empty text",
        "expected text (str), got int",
    ]
    images = clip.encode([b"", Image.new("RGB", (8, 8))])
    assert images.indices == [1] and images.errors[0].reason == "empty file (0 bytes)"


def test_cli_images_then_text_queries(image_models, tmp_path, capsys):
    photos = tmp_path / "photos"
    paths = good_images(photos)
    model = str(image_models["clip"])
    assert main(["encode", "-m", "image-text", str(photos), "-o", str(tmp_path / "p.parquet"),
                 "--model", model, "-q"]) == 0  # fmt: skip
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.num_rows == len(paths) and set(table.column("modality").to_pylist()) == {"image-text"}
    queries = tmp_path / "queries.txt"
    queries.write_text("a brick wall\n")
    assert main(["encode", "-m", "image-text", "--text", "a red bicycle", "--texts", str(queries),
                 "--model", model, "-o", str(tmp_path / "q.parquet")]) == 0  # fmt: skip
    rows = pq.read_table(tmp_path / "q.parquet")
    assert rows.column("source").to_pylist() == ["--text:1", f"{queries}:1"]
    expected = multiembed.load("image-text", model, device="cpu", workers=0).encode_queries(
        ["a red bicycle", "a brick wall"]
    )
    np.testing.assert_allclose(np.array(rows.column("vector").to_pylist()), np.stack(expected), atol=1e-6)
    assert "embedded 2 of 2 items" in capsys.readouterr().err


def test_cli_refuses_inputs_and_texts_together(image_models, tmp_path, capsys):
    assert main(["encode", "-m", "image-text", str(tmp_path), "--text", "x"]) == 2
    assert "not both" in capsys.readouterr().err
