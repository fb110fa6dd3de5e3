"""BM25, exactly and offline: multiembed.model.sparse.BM25EmbeddingFunction and the "bm25" modality.

Parity: pymilvus.model's BM25EmbeddingFunction, given our (offline) analyzer, and ours give the
same vectors bit for bit, and each loads the other's saved parameters.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import numpy as np
import pytest
import scipy.sparse as sp

import multiembed
from multiembed import ConfigError, InputError, ModelNotFoundError
from multiembed.milvus import MilvusStore
from multiembed.model.sparse import BM25EmbeddingFunction, build_default_analyzer

DOCS = [
    "Artificial intelligence was founded as an academic discipline in 1956.",
    "Alan Turing was the first person to conduct substantial research in AI.",
    "Born in Maida Vale, London, Turing was raised in southern England.",
    "Turing machines: the machine reads, the machine writes; Turing's idea.",
    "",  # no terms at all: an empty row, as pymilvus.model gives
    "AI research, AI research and more AI research!",
]
QUERIES = ["Where was Turing born?", "turing turing machine", "zebra", "AI research in London"]
ZH_DOCS = [
    "Milvus 是一个开源的向量数据库，支持亿级向量的相似性搜索。",  # noqa: RUF001
    "我们在北京大学学习人工智能和机器学习。",
    "图灵出生于伦敦，他是计算机科学之父。",  # noqa: RUF001
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Analyzers, fitting and encoding never reach the network (no NLTK download, no parameters)."""
    connect = socket.socket.connect

    def local_only(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"network access attempted: {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


def dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray())


def fitted(docs=DOCS, language: str = "en") -> BM25EmbeddingFunction:
    function = BM25EmbeddingFunction(build_default_analyzer(language))
    function.fit(docs)
    return function


# ---- parity with pymilvus.model ------------------------------------------------------------------
@pytest.mark.parametrize(
    "language,docs,queries", [("en", DOCS, QUERIES), ("zh", ZH_DOCS, ["图灵 伦敦", "向量"])]
)
def test_pymilvus_saved_parameters_give_identical_vectors_here_and_back(tmp_path, language, docs, queries):
    reference = pytest.importorskip("pymilvus.model.sparse")
    analyzer = build_default_analyzer(language)
    theirs = reference.BM25EmbeddingFunction(analyzer)
    theirs.fit(docs)
    theirs.save(str(tmp_path / "theirs.json"))
    ours = BM25EmbeddingFunction(analyzer)
    ours.load(tmp_path / "theirs.json")
    assert ours.dim == theirs.dim
    for name, texts in (("encode_documents", docs), ("encode_queries", queries)):
        expected, got = getattr(theirs, name)(texts), getattr(ours, name)(texts)
        assert got.dtype == expected.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(dense(got), dense(expected))  # bit for bit, max |diff| = 0

    # and the reverse: fitted here, saved here, loaded by pymilvus.model
    mine = BM25EmbeddingFunction(analyzer)
    mine.fit(iter(docs))
    mine.save(tmp_path / "ours.json")
    back = reference.BM25EmbeddingFunction(analyzer)
    back.load(str(tmp_path / "ours.json"))
    np.testing.assert_array_equal(dense(back.encode_documents(docs)), dense(mine.encode_documents(docs)))
    np.testing.assert_array_equal(dense(back.encode_queries(queries)), dense(mine.encode_queries(queries)))
    assert mine.idf == theirs.idf  # same terms, same column indices, same IDF floats


def test_the_parameters_file_is_pymilvus_format_plus_the_counts_to_extend(tmp_path):
    function = fitted()
    function.save(tmp_path / "p.json")
    params = json.loads((tmp_path / "p.json").read_text())
    assert list(params)[:8] == [
        "version",
        "corpus_size",
        "avgdl",
        "idf_word",
        "idf_value",
        "k1",
        "b",
        "epsilon",
    ]
    assert params["version"] == "v1" and params["corpus_size"] == len(DOCS)
    assert len(params["doc_freq"]) == len(params["idf_word"]) == function.dim
    assert params["analyzer"] == "en"


# ---- the analyzer ---------------------------------------------------------------------------------
def test_english_analysis_lowercases_drops_punctuation_and_stop_words_and_stems():
    analyzer = build_default_analyzer("en")
    assert analyzer("Alan Turing was the first person to conduct substantial research in AI.") == [
        "alan", "ture", "first", "person", "conduct", "substanti", "research", "ai",
    ]  # fmt: skip
    assert analyzer("Don\u2019t we? They're running, and e-mail costs 3.14!") == [
        "run",
        "e-mail",
        "cost",
        "3.14",
    ]


def test_chinese_is_segmented_offline_with_stop_words_and_punctuation_dropped():
    analyzer = build_default_analyzer("zh")
    tokens = analyzer("我们在北京大学学习人工智能和机器学习。")
    assert tokens == ["北京大学", "学习", "人工智能", "机器", "学习"]
    function = fitted(ZH_DOCS, "zh")
    scores = dense(function.encode_documents(ZH_DOCS) @ function.encode_queries(["图灵 伦敦"]).T).ravel()
    assert int(np.argmax(scores)) == 2 and scores[0] == scores[1] == 0


def test_the_analyzer_and_its_stemmer_survive_pickling_for_worker_processes():
    import pickle

    analyzer = pickle.loads(pickle.dumps(build_default_analyzer("en")))
    assert analyzer("running machines") == ["run", "machin"]


def test_unknown_languages_and_components_are_config_errors():
    with pytest.raises(ConfigError, match="no default analyzer for language 'xx'"):
        build_default_analyzer("xx")


# ---- fitting: streamed, extended ---------------------------------------------------------------------
def test_fit_streams_over_a_one_shot_iterable_and_matches_a_list():
    pulled = []

    def stream() -> Iterator[str]:
        for text in DOCS * 50:
            pulled.append(text)
            yield text

    streamed = BM25EmbeddingFunction()
    streamed.fit(stream())
    listed = fitted(DOCS * 50)
    assert len(pulled) == len(DOCS) * 50 and streamed.corpus_size == 300
    assert streamed.idf == listed.idf and streamed.avgdl == listed.avgdl


def test_fit_with_worker_processes_equals_one_process():
    many = BM25EmbeddingFunction(num_workers=2)
    many.fit(iter(DOCS * 40))
    assert many.idf == fitted(DOCS * 40).idf


def test_extending_a_fit_equals_fitting_everything_at_once(tmp_path):
    first, more = DOCS[:3], [*DOCS[3:], "Turing was born in London in 1912."]
    extended = fitted(first)
    extended.save(tmp_path / "first.json")
    reloaded = BM25EmbeddingFunction()
    reloaded.load(tmp_path / "first.json")  # the counts come back with the file
    for function in (extended, reloaded):
        function.fit(iter(more), extend=True)
        whole = fitted(first + more)
        assert function.idf == whole.idf and function.avgdl == whole.avgdl
        assert function.corpus_size == len(first) + len(more)
        np.testing.assert_array_equal(
            dense(function.encode_queries(QUERIES)), dense(whole.encode_queries(QUERIES))
        )
        np.testing.assert_array_equal(
            dense(function.encode_documents(DOCS)), dense(whole.encode_documents(DOCS))
        )
    assert [word for word, _ in sorted(extended.idf.items(), key=lambda kv: kv[1][1])][:3] == [
        "artifici", "intellig", "found",
    ]  # fmt: skip  # old terms keep their columns; new ones are appended


def test_a_failed_fit_leaves_the_model_unchanged_and_pymilvus_files_cannot_extend(tmp_path):
    function = fitted()
    before = (dict(function.idf), function.corpus_size)
    with pytest.raises(InputError, match="#1: expected text"):
        function.fit(["fine", 42], extend=True)
    with pytest.raises(ConfigError, match="at least one document"):
        function.fit([])
    assert (dict(function.idf), function.corpus_size) == before
    params = json.loads(json.dumps(function.to_params()))
    del params["doc_freq"], params["total_words"]  # what pymilvus.model writes
    (tmp_path / "theirs.json").write_text(json.dumps(params))
    loaded = BM25EmbeddingFunction()
    loaded.load(tmp_path / "theirs.json")
    np.testing.assert_array_equal(
        dense(loaded.encode_queries(QUERIES)), dense(function.encode_queries(QUERIES))
    )
    with pytest.raises(ConfigError, match="cannot be extended"):
        loaded.fit(["more"], extend=True)


def test_surface_errors_are_multiembed_errors(tmp_path, monkeypatch):
    function = BM25EmbeddingFunction()
    with pytest.raises(ConfigError, match="not fitted"):
        function.encode_documents(["text"])
    with pytest.raises(ValueError, match="Unsupported function called"):  # as pymilvus.model
        fitted()(["text"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match="downloads nothing"):
        function.load()  # pymilvus.model would download its MS MARCO parameters here
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ModelNotFoundError, match="not BM25 parameters"):
        function.load(tmp_path / "bad.json")
    assert fitted().encode_documents([]).shape == (0, fitted().dim)


# ---- the registered modality -------------------------------------------------------------------------
@pytest.fixture
def params_path(tmp_path):
    path = tmp_path / "bm25_params.json"
    fitted().save(path)
    return path


def test_the_bm25_modality_encodes_like_the_function_and_isolates_bad_items(params_path):
    encoder = multiembed.load("bm25", str(params_path), device="cpu")
    function = fitted()
    result = encoder.encode([DOCS[0], 42, DOCS[2]])
    assert [error.reason for error in result.errors] == ["expected text (str), got int"]
    np.testing.assert_array_equal(dense(result.vectors), dense(function.encode_documents([DOCS[0], DOCS[2]])))
    queries = encoder.encode_queries(QUERIES[:2])
    np.testing.assert_array_equal(dense(queries), dense(function.encode_queries(QUERIES[:2])))
    assert isinstance(queries, sp.csr_array) and next(iter(queries)).shape == (1, function.dim)
    config = encoder.config()
    assert config["outputs"] == [{"name": "sparse", "kind": "sparse", "dim": function.dim, "metric": "IP"}]
    assert config["options"] == {"language": "en"} and config["weights"]


def test_the_bm25_modality_needs_a_parameters_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="BM25 parameters file"):
        multiembed.load("bm25", str(tmp_path), device="cpu")
    with pytest.raises(ConfigError, match="does not take 'buckets'"):
        multiembed.load("bm25", "x.json", buckets=3)


def test_a_bm25_collection_is_indexed_and_searched_in_milvus_lite(tmp_path, params_path):
    uri = str(tmp_path / "bm25.db")
    texts = [text for text in DOCS if text]
    with MilvusStore(uri, "lexical", modality="bm25", model=str(params_path), device="cpu") as store:
        assert store.add(texts).added == len(texts)
        fields = {f["name"]: f for f in store.client.describe_collection("lexical")["fields"]}
        assert fields["vector"]["type"].name == "SPARSE_FLOAT_VECTOR"
        hits = store.search("Where was Turing born?", limit=3)
        function = fitted()
        expected = dense(
            function.encode_documents(texts) @ function.encode_queries(["Where was Turing born?"]).T
        )
        assert hits[0].source == "#2"  # "Born in Maida Vale, London, Turing was raised ..."
        assert hits[0].score == pytest.approx(float(expected.max()), rel=1e-5)
        assert store.search("zebra", limit=3) == []
    with MilvusStore(uri, "lexical") as reopened:  # the identity rebuilds the same BM25 encoder
        assert (
            reopened.encoder.modality == "bm25" and reopened.search("AI research", limit=1)[0].source == "#4"
        )
