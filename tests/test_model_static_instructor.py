"""Model2Vec and INSTRUCTOR: the ``model2vec``/``instructor`` modalities and their pymilvus.model drop-ins.

Model2Vec is checked against ``model2vec.StaticModel.encode`` and pymilvus.model's function on a
static model made offline from the packaged MiniLM. pymilvus.model's ``InstructorEmbeddingFunction``
cannot run with sentence-transformers 6 (its vendored loader is never called and ``encode`` needs
the removed ``_text_length``), so INSTRUCTOR is checked against a reference written here with
transformers, step by step as INSTRUCTOR's own code does it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import multiembed
from multiembed import ConfigError, ModelNotFoundError, model
from multiembed.cli import main
from multiembed.milvus import MilvusStore
from tests.tiny_local_models import minilm_static_dir, tiny_instructor_dir, weighted_static_dir

DOCS = [
    "a red bicycle leans against a brick wall",
    "milvus is a vector database for embeddings",
    "the quick brown fox jumps over the lazy dog",
    "artificial intelligence was founded as an academic discipline in 1956",
]
# beyond the 512-token cut, no known token at all, punctuation only
EDGES = ["milvus " * 800, "\u2603\u2603", "!"]


@pytest.fixture(scope="module")
def static_models(minilm_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("static")
    return {
        "float32": minilm_static_dir(minilm_dir, root),
        "float16": minilm_static_dir(minilm_dir, root, dtype="float16"),
        "weighted": weighted_static_dir(minilm_dir, root),
    }


@pytest.fixture(scope="module")
def instructor_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("instructor")
    return {
        "normalized": tiny_instructor_dir(root),
        "plain": tiny_instructor_dir(root, seed=3, normalize_module=False),
    }


@pytest.fixture
def hub_cache(static_models, tmp_path, monkeypatch) -> Path:
    """A Hugging Face cache holding ``minishlab/potion-base-8M`` (the MiniLM static model under that id)."""
    import shutil

    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--minishlab--potion-base-8M"
    shutil.copytree(static_models["float32"], repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return repo


# ---- Model2Vec ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["float32", "float16", "weighted"])
def test_model2vec_vectors_equal_static_model_encode(kind, static_models):
    from model2vec import StaticModel

    texts = DOCS + EDGES
    want = StaticModel.from_pretrained(static_models[kind]).encode(texts).astype(np.float32)
    encoder = multiembed.load("model2vec", static_models[kind], device="cpu", batch_size=3)
    got = encoder.encode(texts)
    assert got.errors == [] and got.vectors.dtype == np.float32
    np.testing.assert_allclose(got.vectors, want, atol=1e-5)
    assert not got.vectors[texts.index("\u2603\u2603")].any()  # no known token: the zero vector, as there


def test_model2vec_options_follow_static_model(static_models):
    from model2vec import StaticModel

    path = static_models["float32"]
    for options in ({"normalize": False}, {"max_length": 4}, {"dimensionality": 32}):
        encoder = multiembed.load("model2vec", path, device="cpu", **options)
        want = StaticModel.from_pretrained(path, **options).encode(DOCS)
        got = np.stack(encoder.encode_documents(DOCS))
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=str(options))
        defaults = {"normalize": True, "max_length": 512, "dimensionality": None}
        assert encoder.config()["options"] == defaults | options
    assert multiembed.load("model2vec", path, device="cpu", dimensionality=32).dim == 32
    with pytest.raises(ConfigError, match="dimensionality 999 is more than the model's 384"):
        multiembed.load("model2vec", path, dimensionality=999)


def test_model2vec_function_equals_pymilvus_model_on_a_cached_hub_id(hub_cache):
    from pymilvus.model.dense import Model2VecEmbeddingFunction as Reference

    ours, reference = model.dense.Model2VecEmbeddingFunction(), Reference()  # both: minishlab/potion-base-8M
    assert ours.encoder.model_id == "minishlab/potion-base-8M" and ours.dim == reference.dim == 384
    for method in ("encode_documents", "encode_queries", "__call__"):
        got, want = getattr(ours, method)(DOCS), getattr(reference, method)(DOCS)
        assert isinstance(got, list) and all(isinstance(v, np.ndarray) and v.shape == (384,) for v in got)
        np.testing.assert_allclose(np.stack(got), np.stack(want), atol=1e-5, err_msg=method)
    local = model.dense.Model2VecEmbeddingFunction(hub_cache / "snapshots" / ("0" * 40))  # a Path works too
    np.testing.assert_allclose(np.stack(local(DOCS)), np.stack(ours(DOCS)), atol=1e-7)


def test_model2vec_missing_or_wrong_models_are_clear(minilm_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFoundError, match=r"'minishlab/potion-base-8M' is not available.*OFFLINE"):
        model.dense.Model2VecEmbeddingFunction()
    with pytest.raises(ModelNotFoundError, match="cannot load as a Model2Vec static model"):
        multiembed.load("model2vec", minilm_dir)  # a sentence-transformers folder, not a static model
    with pytest.raises(ConfigError, match="does not take quantize_to, token"):
        model.dense.Model2VecEmbeddingFunction(minilm_dir, token="x", quantize_to="int8")


def test_model2vec_bad_items_are_reported_with_reasons(static_models):
    encoder = multiembed.load("model2vec", static_models["float32"], device="cpu")
    result = encoder.encode(["a red bicycle", "   ", 42, "dog"])
    assert len(result.vectors) == 2 and result.indices == [0, 3]
    assert [(error.index, error.reason) for error in result.errors] == [
        (1, "empty text"),
        (2, "expected text (str), got int"),
    ]


def test_model2vec_cli_encode_writes_the_same_vectors(static_models, tmp_path):
    source, out = tmp_path / "texts.txt", tmp_path / "out.npy"
    source.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    path = static_models["float32"]
    assert main(["encode", "--modality", "model2vec", "--model", str(path), str(source), "-o", str(out)]) == 0
    want = multiembed.load("model2vec", path, device="cpu").encode_documents(DOCS)
    np.testing.assert_allclose(np.load(out), np.stack(want), atol=1e-6)


def test_model2vec_store_finds_and_reopens(static_models, tmp_path):
    uri = str(tmp_path / "static.db")
    path = str(static_models["float32"])
    with MilvusStore(uri, "docs", modality="model2vec", model=path, device="cpu") as store:
        assert store.add(DOCS).added == 4
        hits = store.search("a red bicycle", limit=2)
        assert hits[0].fields["text"] == DOCS[0] and hits[0].score > hits[1].score
    with MilvusStore(uri, "docs") as store:  # the recorded encoder is rebuilt
        assert store.encoder.modality == "model2vec" and store.encoder.dim == 384
        assert store.search("vector database", limit=1)[0].fields["text"] == DOCS[1]
        assert store.add(DOCS).skipped == 4


# ---- INSTRUCTOR -----------------------------------------------------------------------------
def instructor_reference(path: Path, instruction: str, texts: list[str], normalize: bool = True) -> Any:
    """INSTRUCTOR's computation, written with transformers as its own package does it."""
    from transformers import AutoTokenizer, T5EncoderModel

    tokenizer, encoder = AutoTokenizer.from_pretrained(path), T5EncoderModel.from_pretrained(path).eval()
    dense = torch.load(path / "2_Dense" / "pytorch_model.bin", weights_only=True)["linear.weight"]
    # as INSTRUCTOR tokenizes: padded to max_seq_length (48 in the folder), "longest_first" truncation
    settings = {"padding": "max_length", "truncation": "longest_first", "max_length": 48}
    joined = [instruction.strip() + text.strip() for text in texts]
    inputs = tokenizer(joined, return_tensors="pt", **settings)
    instructions = tokenizer([instruction.strip()] * len(texts), return_tensors="pt", **settings)
    instruction_mask = instructions["attention_mask"][:, 1:]  # all but one position: the </s>
    expanded = torch.zeros_like(inputs["attention_mask"])
    expanded[:, : instruction_mask.shape[1]] = instruction_mask
    mask = inputs["attention_mask"] * (1 - expanded)  # the text's tokens only
    with torch.no_grad():
        states = encoder(**inputs).last_hidden_state
    pooled = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
    vectors = pooled @ dense.T
    return (torch.nn.functional.normalize(vectors, dim=-1) if normalize else vectors).numpy()


def test_instructor_function_equals_the_reference(instructor_models):
    path = instructor_models["normalized"]
    texts = [*DOCS, "Milvus " * 40]  # the last is cut at max_seq_length (48)
    ef = model.dense.InstructorEmbeddingFunction(str(path), batch_size=2)
    assert ef.dim == 16 and ef.encoder.config()["details"]["excludes_instruction"] is True
    for method, instruction in (
        ("encode_queries", "Represent the question for retrieval:"),
        ("encode_documents", "Represent the document for retrieval:"),
        ("__call__", "Represent the document for retrieval:"),
    ):
        got = getattr(ef, method)(texts)
        assert isinstance(got, list) and got[0].shape == (16,)
        np.testing.assert_allclose(np.stack(got), instructor_reference(path, instruction, texts), atol=1e-5)
    queries, documents = np.stack(ef.encode_queries(DOCS)), np.stack(ef(DOCS))
    assert np.abs(queries - documents).max() > 1e-3  # the instruction changes the vectors...
    whole = np.stack(multiembed.load("text", path, device="cpu").encode_documents(DOCS))  # ...pooled over all
    assert np.abs(whole - documents).max() > 1e-3


def test_instructor_custom_instructions_and_unnormalized(instructor_models):
    path = instructor_models["plain"]  # no Normalize module: normalize_embeddings decides
    ef = model.dense.InstructorEmbeddingFunction(
        str(path), query_instruction="Represent the query:", doc_instruction="", normalize_embeddings=False
    )
    want = instructor_reference(path, "Represent the query:", DOCS, normalize=False)
    np.testing.assert_allclose(np.stack(ef.encode_queries(DOCS)), want, atol=1e-5)
    np.testing.assert_allclose(np.stack(ef(DOCS)), instructor_reference(path, "", DOCS, False), atol=1e-5)
    assert np.linalg.norm(ef(DOCS)[0]) != pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ConfigError, match="does not take cache_folder"):
        model.dense.InstructorEmbeddingFunction(str(path), cache_folder="/tmp")


def test_instructor_cli_and_wrong_folder(instructor_models, static_models, tmp_path):
    path = instructor_models["normalized"]
    source, out = tmp_path / "queries.txt", tmp_path / "q.npy"
    source.write_text("\n".join(DOCS), encoding="utf-8")
    argv = ["encode", "-m", "instructor", "--model", str(path), "--texts", str(source), "-o", str(out), "-q"]
    assert main(argv) == 0  # --texts: embedded as queries
    want = instructor_reference(path, "Represent the question for retrieval:", DOCS)
    np.testing.assert_allclose(np.load(out), want, atol=1e-5)
    with pytest.raises(ModelNotFoundError, match="not an INSTRUCTOR folder"):
        multiembed.load("instructor", static_models["float32"])


def test_instructor_store_finds_and_reopens(instructor_models, tmp_path):
    uri, same = str(tmp_path / "instructor.db"), "Represent the sentence:"
    # the same instruction both ways: a query equal to a document has its vector
    options = {"query_instruction": same, "document_instruction": same}
    with MilvusStore(uri, "docs", modality="instructor", model=str(instructor_models["normalized"]),
                     device="cpu", **options) as store:  # fmt: skip
        report = store.add([*DOCS, ""])
        assert report.added == 4 and [error.reason for error in report.errors] == ["empty text"]
        top = store.search(DOCS[2], limit=1)[0]
        assert top.fields["text"] == DOCS[2] and top.score == pytest.approx(1.0, abs=1e-4)
    with MilvusStore(uri, "docs") as store:
        assert store.encoder.config()["options"]["query_instruction"] == same
        assert store.search(DOCS[3], limit=1)[0].fields["text"] == DOCS[3]
