"""The shared Encoder pipeline: order restoration, windows, error isolation, the result object."""

from __future__ import annotations

import numpy as np
import pytest

import multiembed
from multiembed.encoder import Role
from multiembed.modalities.text import TextEncoder


@pytest.fixture(scope="module")
def encoder(tiny_models):
    return multiembed.load("text", str(tiny_models["mean"]), device="cpu")


def one_by_one(encoder, texts):
    return np.stack([encoder.encode_documents([text])[0] for text in texts])


def test_order_is_restored_after_length_sorting(encoder, texts):
    result = encoder.encode(texts, batch_size=2)
    assert result.indices == list(range(len(texts)))
    assert result.sources == [f"#{i}" for i in range(len(texts))]
    np.testing.assert_allclose(result.vectors, one_by_one(encoder, texts), atol=1e-5)


def test_streaming_windows_keep_global_positions(encoder, texts, monkeypatch):
    monkeypatch.setattr(TextEncoder, "sort_window_batches", 1)
    stream = (text for text in texts * 3)  # a generator: no len(), consumed lazily
    parts = list(encoder.iter_encode(stream, batch_size=2))
    assert [len(part) for part in parts] == [2] * 10 + [1]
    assert [i for part in parts for i in part.indices] == list(range(21))
    joined = np.concatenate([part.vectors for part in parts])
    np.testing.assert_allclose(joined, one_by_one(encoder, texts * 3), atol=1e-5)


def test_identical_content_gets_identical_ids(encoder):
    result = encoder.encode(["dog", "cat", "dog"])
    assert result.ids[0] == result.ids[2] != result.ids[1]
    assert len(result.ids[0]) == 64


class PoisonedTextEncoder(TextEncoder):
    """A text encoder whose tokenizer step breaks on one input, as a buggy tokenizer would."""

    def preprocess(self, raws: list[str], role: Role):
        if "poison" in raws:
            raise RuntimeError("tokenizer exploded")
        return super().preprocess(raws, role)


def test_a_failing_batch_is_split_to_isolate_the_bad_item(encoder, texts):
    poisoned = PoisonedTextEncoder(
        encoder.model, model_id=encoder.model_id, policy=encoder.policy, batch_size=4
    )
    inputs = [*texts[:3], "poison", *texts[3:]]
    result = poisoned.encode(inputs)
    assert [(e.index, e.reason) for e in result.errors] == [(3, "RuntimeError: tokenizer exploded")]
    assert result.indices == [0, 1, 2, 4, 5, 6, 7]
    np.testing.assert_allclose(result.vectors, one_by_one(encoder, texts), atol=1e-5)


def test_empty_input_gives_an_empty_result(encoder):
    result = encoder.encode([])
    assert result.vectors.shape == (0, encoder.dim)
    assert result.total == 0
    assert encoder.encode_documents([]) == []


def test_milvus_rows(encoder):
    result = encoder.encode(["a red bicycle", "dog"])
    rows = result.to_milvus_rows()
    assert [set(row) for row in rows] == [{"id", "vector", "source", "modality", "model"}] * 2
    assert rows[0]["modality"] == "text" and rows[0]["model"] == encoder.model_id
    assert [row["id"] for row in rows] == result.ids and [row["source"] for row in rows] == result.sources
    np.testing.assert_array_equal(np.stack([row["vector"] for row in rows]), result.vectors)
    np.testing.assert_allclose(result.vectors, np.stack(encoder.encode_documents(["a red bicycle", "dog"])))


def test_batch_size_must_be_positive(tiny_models):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        multiembed.load("text", str(tiny_models["mean"]), device="cpu", batch_size=0)
