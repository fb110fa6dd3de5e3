"""`multiembed.model.reranker.BGERerankFunction` against a reference written with transformers.

pymilvus.model's ``BGERerankFunction`` needs FlagEmbedding (not a dependency, and written for
transformers 4: it calls ``tokenizer.prepare_for_model``, gone in transformers 5), so the reference
here builds the pairs as FlagEmbedding does and scores them with the sequence classifier directly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from multiembed import ConfigError, InputError, ModelNotFoundError, model
from multiembed.milvus import MilvusStore
from tests.tiny_local_models import minilm_static_dir, tiny_reranker_dir

DOCS = [
    "a red bicycle leans against a brick wall",
    "milvus is a vector database",
    "a dog",
    "the quick brown fox jumps over the lazy dog " * 12,  # cut to fit max_length
]


@pytest.fixture(scope="module")
def reranker(tmp_path_factory) -> Path:
    return tiny_reranker_dir(tmp_path_factory.mktemp("bge"))


def reference_logits(path: Path, query: str, documents: list[str], query_max: int, length: int) -> Any:
    """FlagEmbedding's pairs: [CLS] query[:query_max] [SEP] passage[:what fits] [SEP], one logit each."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    classifier = AutoModelForSequenceClassification.from_pretrained(path).eval()
    question = tokenizer(query, add_special_tokens=False)["input_ids"][:query_max]
    logits = []
    for document in documents:
        passage = tokenizer(document, add_special_tokens=False)["input_ids"][: length - len(question) - 3]
        ids = [tokenizer.cls_token_id, *question, tokenizer.sep_token_id, *passage, tokenizer.sep_token_id]
        types = [0] * (len(question) + 2) + [1] * (len(passage) + 1)
        with torch.no_grad():
            output = classifier(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types]))
        logits.append(float(output.logits[0, 0]))
    return logits


def test_scores_and_order_equal_the_reference(reranker):
    rerank = model.reranker.BGERerankFunction(str(reranker), batch_size=2, max_length=40, device="cpu")
    logits = reference_logits(reranker, "a red bicycle", DOCS, 256, 40)
    probabilities = [1 / (1 + math.exp(-logit)) for logit in logits]
    best_first = sorted(range(len(DOCS)), key=lambda index: probabilities[index], reverse=True)
    for top_k, expected in ((2, best_first[:2]), (0, best_first), (10, best_first)):
        results = rerank("a red bicycle", DOCS, top_k=top_k)
        assert [result.index for result in results] == expected
        assert [result.text for result in results] == [DOCS[index] for index in expected]
        scores = [probabilities[index] for index in expected]
        assert [result.score for result in results] == pytest.approx(scores, abs=1e-5)
    assert len(rerank("a red bicycle", DOCS)) == 4 and rerank("a red bicycle", []) == []
    assert rerank.compute_scores("a red bicycle", DOCS) == pytest.approx(probabilities, abs=1e-5)


def test_long_queries_are_cut_and_raw_logits_kept(reranker):
    query = "search vector database " * 10  # 30 tokens, cut to 6
    rerank = model.reranker.BGERerankFunction(
        str(reranker), normalize=False, query_max_length=6, max_length=24, devices="cpu"
    )
    expected = reference_logits(reranker, query, DOCS, 6, 24)
    assert rerank.compute_scores(query, DOCS) == pytest.approx(expected, abs=1e-5)
    assert min(expected) < 0 or max(expected) > 1  # logits, not probabilities


def test_fp16_is_for_cuda_only(reranker):
    on_cpu = model.reranker.BGERerankFunction(str(reranker), use_fp16=True, device="cpu")
    assert on_cpu.device == "cpu" and on_cpu.policy.dtype == torch.float32
    assert next(on_cpu.model.parameters()).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_on_cuda_stays_close_to_fp32(reranker):
    half = model.reranker.BGERerankFunction(str(reranker), device="cuda", max_length=40)
    full = model.reranker.BGERerankFunction(str(reranker), device="cuda", use_fp16=False, max_length=40)
    assert next(half.model.parameters()).dtype == torch.float16
    assert half.compute_scores("a red bicycle", DOCS) == pytest.approx(
        full.compute_scores("a red bicycle", DOCS), abs=5e-3
    )


def test_wrong_models_and_arguments_are_clear(reranker, minilm_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFoundError, match="'BAAI/bge-reranker-v2-m3' is not available"):
        model.reranker.BGERerankFunction()
    static = minilm_static_dir(minilm_dir, tmp_path)
    with pytest.raises(ModelNotFoundError, match="cannot load as a BGE reranker"):
        model.reranker.BGERerankFunction(str(static))
    with pytest.raises(ConfigError, match="does not take cache_dir"):
        model.reranker.BGERerankFunction(str(reranker), cache_dir="/tmp")
    rerank = model.reranker.BGERerankFunction(str(reranker), device="cpu")
    with pytest.raises(InputError, match="document 1: not text but NoneType"):
        rerank("a red bicycle", ["a dog", None])  # type: ignore[list-item]


def test_a_store_reranks_its_hits(reranker, minilm_dir, tmp_path_factory, tmp_path):
    static = minilm_static_dir(minilm_dir, tmp_path_factory.mktemp("static"))
    rerank = model.reranker.BGERerankFunction(str(reranker), device="cpu", max_length=40)
    with MilvusStore(
        tmp_path / "r.db", "docs", modality="model2vec", model=str(static), device="cpu"
    ) as store:
        store.add(DOCS)
        plain = store.search("a red bicycle", limit=3)
        assert plain[0].fields["text"] == DOCS[0]
        reranked = store.search("a red bicycle", limit=3, rerank=rerank)
        expected = rerank("a red bicycle", [hit.fields["text"] for hit in plain], top_k=3)
        assert [hit.fields["text"] for hit in reranked] == [result.text for result in expected]
        assert [hit.score for hit in reranked] == pytest.approx([result.score for result in expected])
        assert {hit.score_kind for hit in reranked} == {"rerank"}
