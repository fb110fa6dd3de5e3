"""BGE-M3 and mGTE: one forward, several vectors, equal to their reference pipelines.

``multiembed.model.hybrid.BGEM3EmbeddingFunction`` / ``MGTEEmbeddingFunction`` are pymilvus.model's
classes; the ``bge-m3`` and ``mgte`` modalities behind them also index and search in Milvus Lite and
write files from the CLI. The tiny models (tests/tiny_hybrid.py) are saved as the published ones are.
"""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import torch

import multiembed
from multiembed import ConfigError, InputError, ModelNotFoundError, SchemaMismatchError, model
from multiembed.cli import main
from multiembed.lexical import lexical_weights
from multiembed.milvus import MilvusStore
from multiembed.modalities.bge_m3 import BGEM3Encoder
from multiembed.modalities.mgte import MGTEEncoder
from tests.tiny_hybrid import COLBERT_DIM, HIDDEN, tiny_bge_m3_dir, tiny_mgte_dir, tiny_xlmr_tokenizer

DOCS = [
    "a red bicycle leans against a brick wall",
    "the quick brown fox jumps over the lazy dog",
    "milvus is a vector database for hybrid dense and sparse search",
    "bonjour le monde",
    "hallo welt",
    "artificial intelligence was founded as an academic discipline in 1956",
]
VOCAB = len(tiny_xlmr_tokenizer())  # the sparse dimension: the tokenizer's vocabulary


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-hybrid")
    return {
        "bge-m3": tiny_bge_m3_dir(root),
        "mgte": tiny_mgte_dir(root),
        "mgte-remote": tiny_mgte_dir(root, remote_only=True),
    }


# ---- references, written directly against transformers + torch ---------------------------------
def flag_embedding_m3(folder: Path, texts: list[str], max_length: int = 8192) -> dict[str, list]:
    """BGE-M3 as FlagEmbedding's M3Embedder computes it (normalize_embeddings=True), one batch."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder).eval()
    heads = {}
    for name in ("sparse_linear", "colbert_linear"):
        state = torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True)
        heads[name] = torch.nn.Linear(HIDDEN, state["weight"].shape[0])
        heads[name].load_state_dict(state)
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        last = encoder(**inputs, return_dict=True).last_hidden_state
        dense = torch.nn.functional.normalize(last[:, 0], dim=-1)
        token_weights = torch.relu(heads["sparse_linear"](last)).squeeze(-1)
        colbert = heads["colbert_linear"](last[:, 1:]) * inputs["attention_mask"][:, 1:][:, :, None].float()
        colbert = torch.nn.functional.normalize(colbert, dim=-1)
    unused = {
        tokenizer.convert_tokens_to_ids(tokenizer.special_tokens_map[token])
        for token in ("cls_token", "eos_token", "pad_token", "unk_token")
        if token in tokenizer.special_tokens_map
    }
    lexical = []
    for weights, ids in zip(token_weights.numpy(), inputs["input_ids"].tolist(), strict=True):
        result: dict[int, float] = defaultdict(int)
        for weight, token in zip(weights, ids, strict=True):
            if token not in unused and weight > 0 and weight > result[token]:
                result[token] = float(weight)
        lexical.append(dict(result))
    lengths = inputs["attention_mask"].sum(dim=1).tolist()
    return {
        "dense": list(dense.numpy()),
        "lexical": lexical,
        "colbert": [vectors[: length - 1].numpy() for vectors, length in zip(colbert, lengths, strict=True)],
    }


def row_dicts(matrix: sp.csr_matrix | sp.csr_array) -> list[dict[int, float]]:
    matrix = sp.csr_matrix(matrix)
    return [
        dict(zip(matrix[row].indices.tolist(), matrix[row].data.tolist(), strict=True))
        for row in range(matrix.shape[0])
    ]


def assert_same_weights(got: list[dict[int, float]], want: list[dict[int, float]]) -> None:
    assert [sorted(row) for row in got] == [sorted(row) for row in want]  # same token ids
    for got_row, want_row in zip(got, want, strict=True):
        np.testing.assert_allclose(
            [got_row[k] for k in sorted(got_row)], [want_row[k] for k in sorted(want_row)], atol=1e-5
        )


# ---- BGE-M3 -----------------------------------------------------------------------------------------
def test_bge_m3_vectors_equal_flag_embeddings_computation(folders):
    encoder = multiembed.load("bge-m3", folders["bge-m3"], device="cpu", batch_size=4)
    assert isinstance(encoder, BGEM3Encoder)
    result = encoder.encode(DOCS)  # length-sorted batches of 4; the order comes back
    reference = flag_embedding_m3(folders["bge-m3"], DOCS)
    np.testing.assert_allclose(result.outputs["dense"], np.stack(reference["dense"]), atol=1e-5)
    assert_same_weights(row_dicts(result.outputs["sparse"]), reference["lexical"])
    assert all(len(row) >= 2 for row in reference["lexical"])  # the comparison covers real weights
    for got, want in zip(result.outputs["colbert"], reference["colbert"], strict=True):
        assert got.shape == want.shape and got.shape[1] == COLBERT_DIM
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert [spec.describe() for spec in encoder.outputs] == [
        {"name": "dense", "kind": "dense", "dim": HIDDEN, "metric": "IP"},
        {"name": "sparse", "kind": "sparse", "dim": VOCAB, "metric": "IP"},
        {"name": "colbert", "kind": "multi", "dim": COLBERT_DIM, "metric": "IP"},
    ]


def test_bge_m3_function_has_pymilvus_models_surface(folders):
    ef = model.hybrid.BGEM3EmbeddingFunction(str(folders["bge-m3"]), device="cpu", batch_size=2)
    assert ef.dim == {"dense": HIDDEN, "colbert_vecs": COLBERT_DIM, "sparse": VOCAB}
    documents = ef.encode_documents(DOCS[:3])
    assert set(documents) == {"dense", "sparse"}  # return_colbert_vecs=False by default, as there
    assert isinstance(documents["dense"], list) and documents["dense"][0].shape == (HIDDEN,)
    assert documents["dense"][0].dtype == np.float32
    sparse = documents["sparse"]
    assert isinstance(sparse, sp.csr_array) and sparse.shape == (3, VOCAB) and sparse.dtype == np.float64
    assert [row.shape for row in sparse] == [(1, VOCAB)] * 3  # rows iterate as pymilvus.model documents
    reference = flag_embedding_m3(folders["bge-m3"], DOCS[:3])
    assert_same_weights(row_dicts(sparse), reference["lexical"])
    queries, called = ef.encode_queries(DOCS[:3]), ef(DOCS[:3])  # BGE-M3 has no query instruction
    np.testing.assert_array_equal(np.stack(queries["dense"]), np.stack(called["dense"]))
    np.testing.assert_allclose(np.stack(queries["dense"]), np.stack(reference["dense"]), atol=1e-5)

    everything = model.hybrid.BGEM3EmbeddingFunction(
        str(folders["bge-m3"]), device="cpu", return_colbert_vecs=True, return_dense=False
    )(DOCS[:2])
    assert set(everything) == {"sparse", "colbert_vecs"}
    on_cpu = model.hybrid.BGEM3EmbeddingFunction(str(folders["bge-m3"]), devices=["cpu"], use_fp16=True)
    assert str(on_cpu.encoder.policy) == "cpu float32"  # as FlagEmbedding: no float16 on the CPU
    assert [m.shape for m in everything["colbert_vecs"]] == [m.shape for m in reference["colbert"][:2]]


def test_bge_m3_without_normalising_keeps_the_raw_cls_state_and_token_vectors(folders):
    plain = multiembed.load("bge-m3", folders["bge-m3"], device="cpu", normalize=False)
    normalised = multiembed.load("bge-m3", folders["bge-m3"], device="cpu")
    raw, unit = plain.encode(DOCS[:2]), normalised.encode(DOCS[:2])
    norms = np.linalg.norm(raw.outputs["dense"], axis=1)
    assert not np.allclose(norms, 1.0)
    np.testing.assert_allclose(raw.outputs["dense"] / norms[:, None], unit.outputs["dense"], atol=1e-6)
    colbert_norms = np.linalg.norm(raw.outputs["colbert"][0], axis=1)
    np.testing.assert_allclose(
        raw.outputs["colbert"][0] / colbert_norms[:, None], unit.outputs["colbert"][0], atol=1e-6
    )
    np.testing.assert_array_equal(raw.outputs["sparse"].toarray(), unit.outputs["sparse"].toarray())


def test_max_length_truncates_like_the_tokenizer_and_is_part_of_the_identity(folders):
    encoder = multiembed.load("bge-m3", folders["bge-m3"], device="cpu", max_length=6)
    long_text = " ".join(DOCS)  # 40+ tokens
    result = encoder.encode([long_text])
    reference = flag_embedding_m3(folders["bge-m3"], [long_text], max_length=6)
    assert result.outputs["colbert"][0].shape == (5, COLBERT_DIM)  # 6 tokens but the CLS
    np.testing.assert_allclose(result.outputs["dense"], np.stack(reference["dense"]), atol=1e-5)
    assert encoder.config()["options"] == {
        "normalize": True,
        "max_length": 6,
        "return_dense": True,
        "return_sparse": True,
        "return_colbert_vecs": True,
    }
    default = multiembed.load("bge-m3", folders["bge-m3"], device="cpu")
    assert default.max_length == 96  # 8192 asked, the tokenizer's own limit is lower
    with pytest.raises(ConfigError, match="max_length must be a whole number"):
        multiembed.load("bge-m3", folders["bge-m3"], device="cpu", max_length=0)


def test_bad_items_are_reported_with_their_reason_and_the_rest_is_encoded(folders):
    encoder = multiembed.load("bge-m3", folders["bge-m3"], device="cpu")
    result = encoder.encode([DOCS[0], "", 42, b"\xff\xfe\x00", "   ", DOCS[1]])
    assert [(error.index, error.reason) for error in result.errors] == [
        (1, "empty text"),
        (2, "expected text (str), got int"),
        (3, "not valid UTF-16 text (byte 2)"),
        (4, "empty text"),
    ]
    assert result.outputs["dense"].shape == (2, HIDDEN) and len(result.outputs["colbert"]) == 2
    ef = model.hybrid.BGEM3EmbeddingFunction(str(folders["bge-m3"]), device="cpu")
    with pytest.raises(InputError, match="empty text"):
        ef.encode_documents([DOCS[0], ""])


# ---- mGTE -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dimensions", [None, 8])
def test_mgte_function_equals_pymilvus_models(folders, dimensions):
    from pymilvus.model.hybrid import MGTEEmbeddingFunction as Reference

    path = str(folders["mgte"])
    reference = Reference(path, device="cpu", dimensions=dimensions, batch_size=2)
    ours = model.hybrid.MGTEEmbeddingFunction(path, device="cpu", dimensions=dimensions, batch_size=4)
    assert ours.dim == reference.dim == {"dense": dimensions or HIDDEN, "sparse": VOCAB}
    for method in ("encode_documents", "encode_queries", "__call__"):
        got, want = getattr(ours, method)(DOCS), getattr(reference, method)(DOCS)
        assert set(got) == set(want) == {"dense", "sparse"}
        assert isinstance(got["dense"][0], np.ndarray)  # pymilvus.model hands out torch tensors here
        np.testing.assert_allclose(
            np.stack(got["dense"]), np.stack([np.asarray(v) for v in want["dense"]]), atol=1e-5
        )
        assert isinstance(got["sparse"], sp.csr_array) and got["sparse"].dtype == want["sparse"].dtype
        assert_same_weights(row_dicts(got["sparse"]), row_dicts(want["sparse"]))
    assert all(ours.encoder.tokenizer.pad_token_id not in row for row in row_dicts(ours(DOCS)["sparse"]))


def test_mgte_code_shipped_with_the_weights_runs_only_when_allowed(folders):
    with pytest.raises(ModelNotFoundError, match=r"pass trust_remote_code=True \(--trust-remote-code\)"):
        multiembed.load("mgte", folders["mgte-remote"], device="cpu")
    remote = multiembed.load("mgte", folders["mgte-remote"], device="cpu", trust_remote_code=True)
    assert type(remote.model).__name__ == "TinyGTEForTokenClassification"  # the folder's own class
    native = multiembed.load("mgte", folders["mgte"], device="cpu")  # same weights, transformers' class
    assert type(native.model).__name__ == "XLMRobertaForTokenClassification"
    got, want = remote.encode(DOCS), native.encode(DOCS)
    np.testing.assert_allclose(got.outputs["dense"], want.outputs["dense"], atol=1e-6)
    np.testing.assert_allclose(got.outputs["sparse"].toarray(), want.outputs["sparse"].toarray(), atol=1e-6)


def test_mgte_options_and_wrong_models(folders, tmp_path):
    encoder = multiembed.load("mgte", folders["mgte"], device="cpu", dimension=8, return_sparse=False)
    assert isinstance(encoder, MGTEEncoder)
    assert [spec.name for spec in encoder.outputs] == ["dense"] and encoder.dim == 8
    assert encoder.config()["options"] == {
        "normalize": True,
        "dimension": 8,
        "max_length": 96,
        "return_dense": True,
        "return_sparse": False,
    }
    dense = model.hybrid.MGTEEmbeddingFunction(
        str(folders["mgte"]), device="cpu", dimension=8, return_sparse=False
    )
    assert set(dense(DOCS[:1])) == {"dense"} and dense.dim["dense"] == 8
    with pytest.raises(ConfigError, match="dimension must be a whole number from 1 to 32, got 64"):
        multiembed.load("mgte", folders["mgte"], device="cpu", dimension=64)
    with pytest.raises(ConfigError, match="nothing to return"):
        multiembed.load("mgte", folders["mgte"], device="cpu", return_dense=False, return_sparse=False)
    with pytest.raises(ConfigError, match="MGTEEmbeddingFunction does not take cache_dir"):
        model.hybrid.MGTEEmbeddingFunction(str(folders["mgte"]), cache_dir="/tmp")
    with pytest.raises(ModelNotFoundError, match="its token classifier has 3 labels; mGTE's has one"):
        multiembed.load("mgte", tiny_mgte_dir(tmp_path, labels=3), device="cpu")


# ---- loading failures ---------------------------------------------------------------------------------
def test_a_wrong_folder_is_a_clear_model_not_found_error(folders, tmp_path):
    with pytest.raises(
        ModelNotFoundError, match=r"has no config\.json; the bge-m3 modality needs a BGE-M3 folder"
    ):
        multiembed.load("bge-m3", tmp_path, device="cpu")
    with pytest.raises(
        ModelNotFoundError, match=r"has no config\.json; the mgte modality needs an mGTE folder"
    ):
        multiembed.load("mgte", tmp_path, device="cpu")
    with pytest.raises(
        ModelNotFoundError, match="not installed or cached locally and the Hugging Face Hub is off"
    ):
        multiembed.load("bge-m3", device="cpu")  # BAAI/bge-m3 is looked for in the cache only

    copy = tmp_path / "no-heads"
    copy.mkdir()
    for file in folders["bge-m3"].iterdir():
        if file.name != "sparse_linear.pt":
            (copy / file.name).write_bytes(file.read_bytes())
    with pytest.raises(
        ModelNotFoundError, match=r"sparse_linear\.pt is missing.*or pass return_sparse=False"
    ):
        multiembed.load("bge-m3", copy, device="cpu")
    dense_only = multiembed.load("bge-m3", copy, device="cpu", return_sparse=False, return_colbert_vecs=False)
    assert [spec.name for spec in dense_only.outputs] == ["dense"]
    assert len(dense_only.encode_documents(DOCS[:2])) == 2  # one output: a list of vectors

    (copy / "sparse_linear.pt").write_bytes((folders["bge-m3"] / "sparse_linear.pt").read_bytes()[:200])
    with pytest.raises(ModelNotFoundError, match=r"sparse_linear\.pt: damaged or truncated weights file"):
        multiembed.load("bge-m3", copy, device="cpu")
    (copy / "sparse_linear.pt").write_bytes(
        pickle.dumps({"weight": Path("/")}, protocol=2)
    )  # builds an object
    with pytest.raises(ModelNotFoundError, match=r"sparse_linear\.pt: refused: it is a pickle"):
        multiembed.load("bge-m3", copy, device="cpu")
    torch.save({"weight": torch.zeros(1, HIDDEN + 1)}, copy / "sparse_linear.pt")
    with pytest.raises(
        ModelNotFoundError, match=f"not the state dict of a torch.nn.Linear over {HIDDEN}-wide"
    ):
        multiembed.load("bge-m3", copy, device="cpu")
    with pytest.raises(ConfigError, match="BGEM3EmbeddingFunction does not take pooling_method"):
        model.hybrid.BGEM3EmbeddingFunction(str(folders["bge-m3"]), pooling_method="mean")
    with pytest.raises(ConfigError, match=f"colbert_dim=1024, but .* gives {COLBERT_DIM}-d vectors"):
        model.hybrid.BGEM3EmbeddingFunction(str(folders["bge-m3"]), device="cpu", colbert_dim=1024)


def test_the_heads_are_part_of_the_weights_fingerprint(folders, tmp_path):
    copy = tmp_path / "m3"
    copy.mkdir()
    for file in folders["bge-m3"].iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    before = multiembed.load("bge-m3", copy, device="cpu").weights
    head = torch.nn.Linear(HIDDEN, 1)
    torch.save(head.state_dict(), copy / "sparse_linear.pt")  # a fine-tuned sparse head
    after = multiembed.load("bge-m3", copy, device="cpu").weights
    assert before and after and before != after


# ---- the lexical weights themselves ------------------------------------------------------------------
def test_lexical_weights_keep_the_largest_positive_weight_per_token_without_special_tokens():
    ids = torch.tensor([[0, 7, 9, 7, 2, 1], [0, 3, 9, 2, 1, 1]])  # 0 cls, 2 eos, 1 pad, 3 unk
    weights = torch.tensor([[5.0, 0.2, 0.0, 0.6, 4.0, 9.0], [5.0, 1.0, 0.3, 4.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])
    rows = lexical_weights(weights, ids, mask, (0, 1, 2, 3), 12)
    assert rows.shape == (2, 12)
    assert row_dicts(rows) == [{7: pytest.approx(0.6)}, {9: pytest.approx(0.3)}]


# ---- Milvus Lite and the CLI -------------------------------------------------------------------------
def test_bge_m3_collection_dense_sparse_and_hybrid_search_in_milvus_lite(folders, tmp_path):
    uri = str(tmp_path / "m3.db")
    with MilvusStore(uri, "m3", modality="bge-m3", model=str(folders["bge-m3"]), device="cpu") as store:
        assert store.add(DOCS).added == len(DOCS)
        fields = {f["name"]: f["type"].name for f in store.client.describe_collection("m3")["fields"]}
        assert fields["vector"] == "FLOAT_VECTOR" and fields["sparse_vector"] == "SPARSE_FLOAT_VECTOR"
        assert "colbert_vector" not in fields  # ColBERT matrices go to files, not to Milvus
        dense_hits = store.search(DOCS[2], limit=2)
        assert dense_hits[0].source == "#2" and dense_hits[0].score == pytest.approx(1.0, abs=1e-5)

        query = "red bicycle"
        encoded = store.encoder.encode(DOCS)
        query_row = store.encoder.encode([query], role="query").outputs["sparse"]
        scores = (encoded.outputs["sparse"] @ query_row.T).toarray().ravel()
        sparse_hits = store.search(query, limit=3, output="sparse")
        assert sparse_hits[0].source == f"#{int(scores.argmax())}" == "#0"
        assert sparse_hits[0].score == pytest.approx(float(scores.max()), rel=1e-5)
        fused = store.search(query, limit=3, hybrid=True)
        assert fused[0].score_kind == "rrf" and fused[0].source == "#0"
        assert store.add(DOCS).added == 0  # idempotent
        created = store.encoder.config()
    with MilvusStore(uri, "m3", device="cpu") as reopened:  # the recorded identity rebuilds the encoder
        assert isinstance(reopened.encoder, BGEM3Encoder) and reopened.encoder.config() == created
        assert reopened.search("red bicycle", limit=1, output="sparse")[0].source == "#0"
    with pytest.raises(SchemaMismatchError, match="max_length: collection has 96, encoder has 8"):
        MilvusStore(uri, "m3", device="cpu", max_length=8)


def test_mgte_collection_keeps_its_dimension_when_reopened(folders, tmp_path):
    uri = str(tmp_path / "gte.db")
    options = {"model": str(folders["mgte"]), "device": "cpu", "dimension": 8}
    with MilvusStore(uri, "gte", modality="mgte", **options) as store:
        store.add(DOCS)
        fields = {f["name"]: f for f in store.client.describe_collection("gte")["fields"]}
        assert fields["vector"]["params"]["dim"] == 8
    with MilvusStore(uri, "gte", device="cpu") as reopened:
        assert reopened.encoder.dim == 8
        assert reopened.search(DOCS[4], limit=1)[0].source == "#4"
        assert reopened.search(DOCS[4], limit=1, hybrid=True)[0].source == "#4"


def test_cli_encode_writes_all_three_outputs(folders, tmp_path, capsys):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(DOCS[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "out.parquet"
    argv = ["encode", "--modality", "bge-m3", "--model", folders["bge-m3"], source, "-o", out]
    assert main([str(arg) for arg in argv]) == 0
    table = pq.read_table(out)
    assert {"vector", "sparse_vector", "colbert_vector"} <= set(table.column_names)
    reference = flag_embedding_m3(folders["bge-m3"], DOCS[:3])
    np.testing.assert_allclose(
        np.array(table.column("vector").to_pylist()), np.stack(reference["dense"]), atol=1e-5
    )
    sparse = [
        {int(k): v for k, v in json.loads(row).items()} for row in table.column("sparse_vector").to_pylist()
    ]
    assert_same_weights(sparse, reference["lexical"])
    for got, want in zip(table.column("colbert_vector").to_pylist(), reference["colbert"], strict=True):
        np.testing.assert_allclose(np.array(got), want, atol=1e-5)
    config = json.loads(table.schema.metadata[b"multiembed.config"])
    assert config["modality"] == "bge-m3" and config["options"]["return_colbert_vecs"] is True
    assert "embedded 3 of 3 items, 0 failed" in capsys.readouterr().err
