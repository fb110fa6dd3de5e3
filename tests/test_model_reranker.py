"""`multiembed.model.reranker` against pymilvus.model's, on the same tiny cross-encoder, and
reranking a store's hits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multiembed import BackendError, ConfigError, InputError, model
from multiembed.milvus import Hit, MilvusStore
from tests.tiny_models import tiny_bert_dir

DOCS = ["a red bicycle leans against a brick wall", "milvus is a vector database", "a dog", "the lazy fox"]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory) -> Path:
    """A tiny BERT with a one-label classification head: what sentence-transformers' CrossEncoder loads."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    root = tmp_path_factory.mktemp("cross-encoder")
    bert = tiny_bert_dir(root, seed=5)
    config = BertConfig.from_pretrained(bert)
    config.num_labels = 1
    torch.manual_seed(5)
    BertForSequenceClassification(config).eval().save_pretrained(root / "ce")
    AutoTokenizer.from_pretrained(bert).save_pretrained(root / "ce")
    return root / "ce"


def test_cross_encoder_rerank_equals_pymilvus_model(cross_encoder):
    from pymilvus.model.reranker import CrossEncoderRerankFunction as Reference

    ours = model.reranker.CrossEncoderRerankFunction(str(cross_encoder), device="cpu", batch_size=2)
    reference = Reference(str(cross_encoder), device="cpu", batch_size=2)
    for top_k in (2, 0):
        got, want = ours("a red bicycle", DOCS, top_k=top_k), reference("a red bicycle", DOCS, top_k=top_k)
        assert [(r.text, r.index) for r in got] == [(r.text, r.index) for r in want]
        assert [r.score for r in got] == pytest.approx([float(r.score) for r in want], abs=1e-6)
    assert len(ours("a red bicycle", DOCS)) == 4 and ours("q", []) == []
    with pytest.raises(ConfigError, match="does not take max_length"):
        model.reranker.CrossEncoderRerankFunction(str(cross_encoder), max_length=8)


def test_a_store_reranks_its_hits(cross_encoder, tiny_models, tmp_path):
    rerank = model.reranker.CrossEncoderRerankFunction(str(cross_encoder), device="cpu")
    with MilvusStore(str(tmp_path / "r.db"), "docs", modality="text", model=str(tiny_models["mean"]),
                     device="cpu") as store:  # fmt: skip
        store.add(DOCS)
        plain = store.search("a red bicycle", limit=3)
        reranked = store.search("a red bicycle", limit=3, rerank=rerank)
        expected = rerank("a red bicycle", [hit.fields["text"] for hit in plain], top_k=3)
        assert [hit.fields["text"] for hit in reranked] == [result.text for result in expected]
        assert [hit.score for hit in reranked] == pytest.approx([result.score for result in expected])
        assert {hit.score_kind for hit in reranked} == {"rerank"}
    with MilvusStore(str(tmp_path / "v.db"), "vectors", modality="text", model=str(tiny_models["mean"]),
                     device="cpu") as store:  # fmt: skip
        vector = store.query_vector("a dog")
        store.add(DOCS)
        with pytest.raises(InputError, match="reranking needs a text query"):
            store.search(vector, rerank=rerank)


def test_hits_without_texts_cannot_be_reranked(cross_encoder):
    from multiembed.milvus.search import _reranked

    rerank = model.reranker.CrossEncoderRerankFunction(str(cross_encoder), device="cpu")
    photo_hits = [Hit("a" * 64, 0.9, "photo.jpg", {"modality": "image"})]
    with pytest.raises(BackendError, match="only text collections keep them"):
        _reranked("a red bicycle", photo_hits, rerank)
