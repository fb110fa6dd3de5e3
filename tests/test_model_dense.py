"""`multiembed.model`'s dense functions against pymilvus.model's, on the same weights."""

from __future__ import annotations

import numpy as np
import pytest

from multiembed import ConfigError, model

SENTENCE = "Artificial intelligence was founded as an academic discipline in 1956."
DOCS = [SENTENCE, "Alan Turing was the first person to conduct substantial research in AI.", "dog"]


def test_default_embedding_function_is_the_packaged_minilm():
    ef = model.DefaultEmbeddingFunction()
    vectors = ef.encode_documents([SENTENCE])
    assert ef.dim == 384 and isinstance(vectors, list) and vectors[0].shape == (384,)
    np.testing.assert_allclose(vectors[0][:4], [-3.0939e-02, -1.8066e-02, 1.3478e-02, 2.7716e-02], atol=1e-6)


@pytest.mark.parametrize("which", ["minilm", "tiny"])
def test_sentence_transformer_function_equals_pymilvus_model(which, minilm_dir, tiny_models):
    from pymilvus.model.dense import SentenceTransformerEmbeddingFunction as Reference

    path = str(minilm_dir if which == "minilm" else tiny_models["mean"])
    options = {"query_instruction": "query: ", "doc_instruction": "passage: ", "batch_size": 2}
    ours = model.dense.SentenceTransformerEmbeddingFunction(path, **options)
    reference = Reference(path, device="cpu", **options)
    assert ours.dim == reference.dim
    for method in ("encode_documents", "encode_queries", "__call__"):
        got, want = getattr(ours, method)(DOCS), getattr(reference, method)(DOCS)
        assert isinstance(got, list) and len(got) == len(want)
        np.testing.assert_allclose(np.stack(got), np.stack(want), atol=1e-6, err_msg=method)
    assert np.abs(ours.encode_queries(DOCS)[0] - ours(DOCS)[0]).max() > 1e-4  # the instruction counts


def test_short_names_and_unknown_arguments():
    ef = model.dense.SentenceTransformerEmbeddingFunction("all-MiniLM-L6-v2")  # resolved to the package
    assert ef.encoder.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    with pytest.raises(ConfigError, match="does not take cache_folder"):
        model.dense.SentenceTransformerEmbeddingFunction("minilm", cache_folder="/tmp")
