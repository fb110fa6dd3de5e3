"""SPLADE, offline: the "splade" modality and multiembed.model.sparse.SpladeEmbeddingFunction.

Parity: for the same tiny masked-LM folders, the vectors equal (max |diff| <= 1e-5, same non-zero
dimensions) a reference written directly with transformers and pymilvus.model's own
SpladeEmbeddingFunction, for documents and queries, with a separate query model and with top-k pruning.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import torch

import multiembed
from multiembed import ConfigError, InputError, ModelNotFoundError, SchemaMismatchError
from multiembed.cli import main
from multiembed.milvus import MilvusStore
from multiembed.model.sparse import SpladeEmbeddingFunction
from tests.tiny_models import tiny_bert_dir
from tests.tiny_splade import tiny_splade_dir

DOCS = [
    "artificial intelligence was founded as an academic discipline in 1956",
    "a red bicycle",
    "search vector database " * 20,  # past the tokenizer's 48 tokens: truncated
    "the quick brown fox jumps over the lazy dog",
    "milvus",
    "a brick wall",
]
QUERIES = ["red bicycle", "what is milvus?", "quick fox"]
ATOL = 1e-5


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A document model, a query model (other seed, same vocabulary), and what is not a SPLADE model."""
    root = tmp_path_factory.mktemp("tiny-splade")
    return {
        "doc": tiny_splade_dir(root, "doc", seed=0),
        "query": tiny_splade_dir(root, "query", seed=1),
        "other-vocab": tiny_splade_dir(root, "other-vocab", seed=2, extra_words=("zebra",)),
        "no-head": tiny_bert_dir(root / "plain-bert"),
    }


# ---- the reference, written directly against transformers -----------------------------------------
@functools.cache
def _masked_lm(path: Path) -> tuple[object, torch.nn.Module]:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModelForMaskedLM.from_pretrained(path).eval()


def reference(path: Path, texts: list[str], k: int | None = None, instruction: str = "") -> np.ndarray:
    """max over real tokens of log(1 + relu(MLM logits)), then the k largest kept."""
    tokenizer, model = _masked_lm(path)
    batch = tokenizer(  # type: ignore[operator]
        [instruction + text for text in texts], padding=True, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(**batch).logits
    weights = torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)
    pooled = weights.max(dim=1).values
    if k is not None:
        top = pooled.topk(k, dim=1)
        pooled = torch.zeros_like(pooled).scatter(1, top.indices, top.values)
    return pooled.numpy()


def assert_same(got: sp.csr_array, expected: np.ndarray) -> None:
    dense = np.asarray(got.toarray())
    assert dense.shape == expected.shape
    assert np.array_equal(dense != 0, expected != 0), "different non-zero dimensions"
    assert np.abs(dense - expected).max() <= ATOL


# ---- parity -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("separate,k_query,k_doc", [(False, None, None), (True, 4, 20)])
def test_vectors_equal_a_transformers_reference(folders, separate, k_query, k_doc):
    query_model = folders["query"] if separate else folders["doc"]
    encoder = multiembed.load(
        "splade",
        folders["doc"],
        device="cpu",
        query_model=str(folders["query"]) if separate else None,
        k_tokens_query=k_query,
        k_tokens_document=k_doc,
        query_instruction="query: ",
        batch_size=4,  # batches mix lengths: padding must not leak into the max
    )
    assert encoder.dim == len(_masked_lm(folders["doc"])[0])  # type: ignore[arg-type]
    assert_same(encoder.encode_documents(DOCS), reference(folders["doc"], DOCS, k_doc))
    assert_same(encoder.encode_queries(QUERIES), reference(query_model, QUERIES, k_query, "query: "))
    if k_doc is not None:
        assert max(np.diff(encoder.encode_documents(DOCS).indptr)) == k_doc


def test_a_vector_does_not_depend_on_the_batch_it_shares(folders):
    encoder = multiembed.load("splade", folders["doc"], device="cpu")
    alone = encoder.encode_documents(["milvus"])
    beside_long = encoder.encode_documents(["milvus", DOCS[2]])[[0]]
    assert alone.nnz and np.abs((alone - beside_long).toarray()).max() <= ATOL


def pymilvus_splade(path: Path, **settings: object) -> object:
    """pymilvus.model's function on a local folder, runnable with transformers 5.

    pymilvus.model 0.3.4 tokenizes with ``tokenizer.batch_encode_plus``, which transformers 5
    removed (it fails with AttributeError there); calling the tokenizer on a list is what that
    method did, so it is restored on this one tokenizer. Their pooling, pruning and CSR code run as is.
    """
    theirs = pytest.importorskip("pymilvus.model.sparse").SpladeEmbeddingFunction(str(path), **settings)
    tokenizer = theirs.model.tokenizer
    if not hasattr(tokenizer, "batch_encode_plus"):
        tokenizer.batch_encode_plus = tokenizer.__call__
    return theirs


def test_pymilvus_model_gives_the_same_vectors(folders):
    settings = {
        "query_instruction": "query: ",
        "doc_instruction": "passage: ",
        "k_tokens_query": 4,
        "k_tokens_document": 16,
        "device": "cpu",
    }
    # pymilvus.model max-pools over padding too; one text per batch means there is none
    theirs: Any = pymilvus_splade(folders["doc"], batch_size=1, **settings)
    theirs_query = pymilvus_splade(folders["query"], batch_size=1, **settings)
    ours = SpladeEmbeddingFunction(str(folders["doc"]), batch_size=4, **settings)
    paired = SpladeEmbeddingFunction(str(folders["doc"]), query_model_name=str(folders["query"]), **settings)
    assert ours.dim == theirs.dim == paired.dim
    for mine, reference_function, name, texts in (
        (ours, theirs, "encode_documents", DOCS),
        (ours, theirs, "encode_queries", QUERIES),
        (ours, theirs, "__call__", DOCS),
        (paired, theirs, "encode_documents", DOCS),
        (paired, theirs_query, "encode_queries", QUERIES),
    ):
        got = getattr(mine, name)(texts)
        expected = getattr(reference_function, name)(texts)
        assert isinstance(got, sp.csr_array) and got.dtype == np.float32
        assert_same(got, np.asarray(expected.toarray()))


def test_the_drop_in_surface_matches_pymilvus_model(folders):
    function = SpladeEmbeddingFunction(
        str(folders["doc"]), k_tokens_document=5, doc_instruction="passage: ", device="cpu"
    )
    docs = function.encode_documents(DOCS[:3])
    rows = list(docs)
    assert len(rows) == 3 and rows[0].shape == (1, function.dim) and isinstance(rows[0], sp.csr_array)
    assert list(np.diff(docs.indptr)) == [5, 5, 5]
    plain = function(DOCS[:3])  # as in pymilvus.model: no instruction, no pruning
    assert_same(plain, reference(folders["doc"], DOCS[:3]))
    assert (function.model_name, function.k_tokens_document, function.doc_instruction) == (
        str(folders["doc"]),
        5,
        "passage: ",
    )
    with pytest.raises(ConfigError, match="does not take output_hidden_states"):
        SpladeEmbeddingFunction(str(folders["doc"]), output_hidden_states=True)


# ---- the modality: CLI, Milvus Lite, errors --------------------------------------------------------
def test_cli_encodes_a_text_file_to_jsonl_and_parquet(folders, tmp_path):
    source = tmp_path / "docs.txt"
    source.write_text("a red bicycle\n\nmilvus\n", encoding="utf-8")
    expected = reference(folders["doc"], ["a red bicycle", "milvus"])
    jsonl, parquet = tmp_path / "out.jsonl", tmp_path / "out.parquet"
    for out in (jsonl, parquet):
        argv = ["encode", "--modality", "splade", "--model", folders["doc"], source, "-o", out, "-q"]
        assert main([str(arg) for arg in argv]) == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    table = pq.read_table(parquet)
    assert [row["source"] for row in rows] == table.column("source").to_pylist()
    assert table.column("source").to_pylist() == [f"{source}:1", f"{source}:3"]
    assert set(table.column("modality").to_pylist()) == {"splade"}
    from_parquet = [json.loads(text) for text in table.column("vector").to_pylist()]
    for row, stored in zip(rows, from_parquet, strict=True):
        assert row["vector"] == stored
    for index, weights in enumerate(from_parquet):
        got = np.zeros(expected.shape[1], np.float32)
        got[[int(key) for key in weights]] = list(weights.values())
        assert np.array_equal(got != 0, expected[index] != 0)
        assert np.abs(got - expected[index]).max() <= ATOL


def test_a_splade_collection_is_searched_and_reopened_in_milvus_lite(folders, tmp_path):
    uri = str(tmp_path / "splade.db")
    options = {"query_model": str(folders["query"]), "k_tokens_query": 8}
    query = "a red bicycle against a brick wall"
    scores = reference(folders["doc"], DOCS) @ reference(folders["query"], [query], 8).T
    best = int(np.argmax(scores))
    with MilvusStore(
        uri, "sparse", modality="splade", model=str(folders["doc"]), device="cpu", **options
    ) as store:
        assert store.add(DOCS).added == len(DOCS)
        fields = {f["name"]: f for f in store.client.describe_collection("sparse")["fields"]}
        assert fields["vector"]["type"].name == "SPARSE_FLOAT_VECTOR"
        hits = store.search(query, limit=3)
        assert hits[0].source == f"#{best}"
        assert hits[0].score == pytest.approx(float(scores.max()), rel=1e-4)
    with MilvusStore(uri, "sparse", device="cpu") as reopened:  # identity rebuilds the query model too
        config = reopened.encoder.config()
        assert config["options"]["query_model"] == str(folders["query"])
        assert config["options"]["k_tokens_query"] == 8 and config["details"]["query_weights"]
        again = reopened.search(query, limit=3)
        assert [hit.source for hit in again] == [hit.source for hit in hits]
    with pytest.raises(SchemaMismatchError, match="k_tokens_query: collection has 8, encoder has 3"):
        MilvusStore(uri, "sparse", device="cpu", k_tokens_query=3)


def test_a_bad_item_is_named_and_the_rest_are_embedded(folders):
    encoder = multiembed.load("splade", folders["doc"], device="cpu")
    result = encoder.encode(["a red bicycle", "", 42, "milvus"])
    assert [(error.source, error.reason) for error in result.errors] == [
        ("#1", "empty text"),
        ("#2", "expected text (str), got int"),
    ]
    assert_same(sp.csr_array(result.vectors), reference(folders["doc"], ["a red bicycle", "milvus"]))
    with pytest.raises(InputError, match="#1: empty text"):
        SpladeEmbeddingFunction(str(folders["doc"])).encode_queries(["fine", "   "])


def test_what_is_not_a_splade_model_is_refused_clearly(folders, tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="not a masked language model, its masked-LM head"):
        multiembed.load("splade", folders["no-head"], device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="cannot load as a masked language model"):
        multiembed.load("splade", tmp_path / "empty", device="cpu")
    with pytest.raises(ModelNotFoundError, match="vocabulary differs"):
        multiembed.load("splade", folders["doc"], device="cpu", query_model=str(folders["other-vocab"]))
    with pytest.raises(ConfigError, match="k_tokens_query must be a whole number >= 1"):
        multiembed.load("splade", folders["doc"], device="cpu", k_tokens_query=0)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFoundError, match="efficient-splade-VI-BT-large-doc' is not available"):
        multiembed.load("splade", "efficient-vi-bt-large", device="cpu")  # never downloaded offline
