"""The hosted rerankers (Cohere, Voyage AI, Jina AI, text-embeddings-inference) against a real HTTP
server on 127.0.0.1 that speaks each provider's documented format and scores documents by word
overlap with the query: order, caller positions, top_k, splitting long lists, 429 + Retry-After,
refused keys, missing keys, and reranking a Milvus store's hits."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from multiembed import BackendError, ConfigError, InputError, model
from tests.provider_server import provider_server

KEY = "test-secret-key-123"
WRONG_KEY = "wrong-secret-key-777"
QUERY = "red bicycle against a brick wall"
DOCS = [
    "milvus is a vector database",
    "a red bicycle",
    "the lazy dog sleeps",
    "a red bicycle against a brick wall",
    "brick wall",
    "bicycle",
]
ALL_KEY_VARIABLES = ("CO_API_KEY", "COHERE_API_KEY", "VOYAGE_API_KEY", "JINAAI_API_KEY", "JINA_API_KEY")


def overlap(query: str, document: str) -> float:
    """What every test server scores: the share of the query's words the document holds."""
    words = set(query.split())
    return len(words & set(document.split())) / len(words)


def expected(query: str, documents: list[str], top_k: int) -> list[tuple[int, float]]:
    scores = [(index, overlap(query, text)) for index, text in enumerate(documents)]
    best = sorted(scores, key=lambda pair: (-pair[1], pair[0]))
    return best[:top_k] if top_k else best


@dataclass
class Spec:
    """One provider's documented wire format, as its test server speaks it."""

    name: str
    path: str  # where the real API serves it, under the base URL given to the client
    base: str  # appended to the server's address to make base_url
    make: Callable[..., Any]
    texts: str  # the request field holding the documents
    top: str | None  # the request field limiting the answer
    required: tuple[str, ...]
    limit: int
    too_many_status: int
    answer: Callable[[list[tuple[int, float]], dict[str, Any]], Any]
    error: Callable[[str], Any]
    auth_message: str
    key_env: tuple[str, ...]


def _cohere_answer(ranked: list[tuple[int, float]], body: dict[str, Any]) -> Any:
    results = [{"index": index, "relevance_score": score} for index, score in ranked]
    return {"id": "r-1", "results": results, "meta": {"billed_units": {"search_units": 1}}}


def _voyage_answer(ranked: list[tuple[int, float]], body: dict[str, Any]) -> Any:
    data = [{"index": index, "relevance_score": score} for index, score in ranked]
    return {"object": "list", "data": data, "model": body["model"], "usage": {"total_tokens": 42}}


def _jina_answer(ranked: list[tuple[int, float]], body: dict[str, Any]) -> Any:
    results = [
        {"index": index, "relevance_score": score, "document": {"text": body["documents"][index]}}
        for index, score in ranked
    ]
    return {"model": body["model"], "usage": {"total_tokens": 42}, "results": results}


def _tei_answer(ranked: list[tuple[int, float]], body: dict[str, Any]) -> Any:
    return [{"index": index, "score": score} for index, score in ranked]


SPECS = {
    "cohere": Spec(
        "cohere", "/v2/rerank", "/v2", model.reranker.CohereRerankFunction, "documents", "top_n",
        ("model", "query", "documents"), 1000, 400, _cohere_answer,
        lambda message: {"message": message}, "invalid api token", ("CO_API_KEY", "COHERE_API_KEY"),
    ),
    "voyage": Spec(
        "voyage", "/v1/rerank", "/v1", model.reranker.VoyageRerankFunction, "documents", "top_k",
        ("query", "documents", "model"), 1000, 400, _voyage_answer,
        lambda message: {"detail": message}, "Provided API key is invalid.", ("VOYAGE_API_KEY",),
    ),
    "jina": Spec(
        "jina", "/v1/rerank", "/v1", model.reranker.JinaRerankFunction, "documents", "top_n",
        ("model", "query", "documents"), 1000, 400, _jina_answer,
        lambda message: {"detail": message}, "Invalid API key, please check your API key",
        ("JINAAI_API_KEY", "JINA_API_KEY"),
    ),
    "tei": Spec(
        "tei", "/rerank", "", lambda **kw: model.reranker.TEIRerankFunction(**kw), "texts", None,
        ("query", "texts"), 32, 413, _tei_answer,
        lambda message: {"error": message, "error_type": "validation"}, "unauthorized", (),
    ),
}  # fmt: skip


def rerank_server(spec: Spec, fail_first: int = 0, retry_after: str | None = None, broken: bool = False):
    """A server speaking ``spec``'s format; it checks the key, the fields and the per-request limit."""
    calls = {"n": 0}

    def handle(path: str, headers: dict, body: Any):
        calls["n"] += 1
        if path != spec.path:
            return 404, spec.error(f"no route {path}"), {}
        if headers.get("authorization") != f"Bearer {KEY}":
            return 401, spec.error(spec.auth_message), {}
        if calls["n"] <= fail_first:
            return 429, spec.error("too many requests"), {"Retry-After": retry_after} if retry_after else {}
        missing = [field for field in spec.required if field not in body]
        if missing:
            return 400, spec.error(f"missing required fields {missing}"), {}
        texts = body[spec.texts]
        if len(texts) > spec.limit:
            return spec.too_many_status, spec.error(f"{len(texts)} documents > {spec.limit}"), {}
        ranked = expected(body["query"], texts, body.get(spec.top) if spec.top else 0)
        if broken:
            ranked = [(len(texts) + 7, 0.5)]
        return 200, spec.answer(ranked, body), {}

    return provider_server(handle)


@pytest.fixture
def keyed(monkeypatch):
    """Every provider's key variables cleared; the test key set in each provider's first variable."""
    for variable in ALL_KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for spec in SPECS.values():
        if spec.key_env:
            monkeypatch.setenv(spec.key_env[0], KEY)


def reranker(spec: Spec, url: str, **options: Any) -> Any:
    if spec.name == "tei":
        options.setdefault("api_key", KEY)
    return spec.make(base_url=url + spec.base, **options)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_results_are_best_first_with_the_callers_positions(name, keyed):
    spec = SPECS[name]
    with rerank_server(spec) as server:
        rerank = reranker(spec, server.url)
        results = rerank(QUERY, DOCS, top_k=3)
        assert [(r.index, r.score) for r in results] == expected(QUERY, DOCS, 3)
        assert [r.text for r in results] == [DOCS[3], DOCS[1], DOCS[4]]
        everything = rerank(QUERY, DOCS, top_k=0)
        assert [(r.index, r.score) for r in everything] == expected(QUERY, DOCS, 0)
        assert len(rerank(QUERY, DOCS)) == 5  # pymilvus' default top_k
        assert rerank(QUERY, []) == []
        first, second, third = server.requests
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.body[spec.texts] == DOCS and first.body["query"] == QUERY
    if spec.top:
        assert first.body[spec.top] == 3 and spec.top not in second.body and third.body[spec.top] == 5
    if name != "tei":
        assert first.body["model"] == inspect.signature(spec.make).parameters["model_name"].default


@pytest.mark.parametrize("name", sorted(SPECS))
def test_lists_above_the_per_request_limit_are_split_and_merged(name, keyed):
    spec = SPECS[name]
    filler = ["a bicycle", "a red wall", "nothing in common", "against the wind", "a brick"]
    documents = [filler[i % len(filler)] + f" {i}" for i in range(spec.limit + 4)]
    documents[spec.limit + 2] = QUERY  # the best document is in the second request
    with rerank_server(spec) as server:
        rerank = reranker(spec, server.url)
        results = rerank(QUERY, documents, top_k=4)
        assert [(r.index, r.score) for r in results] == expected(QUERY, documents, 4)
        assert results[0].index == spec.limit + 2 and results[0].text == QUERY
        assert [len(r.body[spec.texts]) for r in server.requests] == [spec.limit, 4]
        everything = rerank(QUERY, documents, top_k=0)
        assert [(r.index, r.score) for r in everything] == expected(QUERY, documents, 0)
        small = reranker(spec, server.url, max_documents=2)(QUERY, DOCS, top_k=2)
        assert [(r.index, r.score) for r in small] == expected(QUERY, DOCS, 2)
        assert [len(r.body[spec.texts]) for r in server.requests[4:]] == [2, 2, 2]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_429_is_retried_after_the_servers_retry_after(name, keyed):
    spec = SPECS[name]
    wait = "1" if name == "cohere" else "0"  # one real wait is enough to keep the file fast
    with rerank_server(spec, fail_first=1, retry_after=wait) as server:
        started = time.monotonic()
        results = reranker(spec, server.url)(QUERY, DOCS, top_k=2)
        waited = time.monotonic() - started
    assert len(server.requests) == 2 and [r.index for r in results] == [3, 1]
    assert waited >= float(wait) - 0.1


def test_retries_give_up_with_one_line(keyed):
    spec = SPECS["voyage"]
    with rerank_server(spec, fail_first=100, retry_after="0") as server:
        rerank = reranker(spec, server.url, max_retries=2)
        with pytest.raises(
            BackendError, match=r"^Voyage AI: .*still failing after 3 tries \(HTTP 429: too many"
        ):
            rerank(QUERY, DOCS)
    assert len(server.requests) == 3


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_refused_key_is_one_line_with_the_providers_message_and_never_the_key(name, keyed):
    spec = SPECS[name]
    with rerank_server(spec) as server:
        rerank = reranker(spec, server.url, api_key=WRONG_KEY)
        with pytest.raises(BackendError) as caught:
            rerank(QUERY, DOCS)
    message = str(caught.value)
    assert "HTTP 401" in message and spec.auth_message in message
    assert WRONG_KEY not in message and "\n" not in message
    assert len(server.requests) == 1  # an auth error is not retried


@pytest.mark.parametrize("name", ["cohere", "voyage", "jina"])
def test_no_key_anywhere_is_a_config_error_naming_the_variables(name, monkeypatch):
    spec = SPECS[name]
    for variable in ALL_KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ConfigError, match=" or ".join(spec.key_env)):
        spec.make()
    monkeypatch.setenv(spec.key_env[-1], KEY)  # the second name works too
    with rerank_server(spec) as server:
        assert reranker(spec, server.url)(QUERY, DOCS, top_k=1)[0].index == 3
    assert spec.make().url.startswith("https://api.")


def test_tei_takes_pymilvus_arguments_and_needs_an_address():
    with pytest.raises(ConfigError, match="needs api_url"):
        model.reranker.TEIRerankFunction()
    tei = model.reranker.TEIRerankFunction("http://127.0.0.1:9/")
    assert tei.api_url == "http://127.0.0.1:9/rerank" and tei.client.headers == {}
    with rerank_server(SPECS["tei"]) as server:
        raw = model.reranker.TEIRerankFunction(server.url, api_key=KEY, raw_scores=True)
        assert raw(QUERY, DOCS, top_k=1)[0].index == 3
        assert server.requests[0].body == {"query": QUERY, "texts": DOCS, "raw_scores": True}


def test_constructors_match_pymilvus_model():
    import pymilvus.model.reranker as reference

    for name in ("CohereRerankFunction", "VoyageRerankFunction", "JinaRerankFunction", "TEIRerankFunction"):
        theirs = inspect.signature(getattr(reference, name).__init__).parameters
        ours = inspect.signature(getattr(model.reranker, name).__init__).parameters
        for parameter in theirs.values():
            if parameter.kind is not parameter.VAR_KEYWORD:
                assert parameter.name in ours, (name, parameter.name)
                if parameter.default is not parameter.empty:
                    assert ours[parameter.name].default == parameter.default, (name, parameter.name)
        call = inspect.signature(getattr(model.reranker, name).__call__).parameters
        assert list(call)[1:] == ["query", "documents", "top_k"] and call["top_k"].default == 5


def test_bad_arguments_and_bad_answers_are_named(keyed):
    spec = SPECS["cohere"]
    with rerank_server(spec, broken=True) as server:
        rerank = reranker(spec, server.url)
        with pytest.raises(
            BackendError, match=r"Cohere: the answer's indices \[13\] do not match 6 documents"
        ):
            rerank(QUERY, DOCS)
        with pytest.raises(InputError, match="non-empty text query"):
            rerank("  ", DOCS)
        with pytest.raises(InputError, match="document 1 is int"):
            rerank(QUERY, ["text", 3])
        with pytest.raises(ConfigError, match="top_k must be"):
            rerank(QUERY, DOCS, top_k=-1)
        assert len(server.requests) == 1
    with pytest.raises(ConfigError, match="max_documents"):
        model.reranker.CohereRerankFunction(max_documents=0)
    with pytest.raises(ConfigError, match="must start with http"):
        model.reranker.JinaRerankFunction(base_url="api.jina.ai")


def test_a_store_reranks_its_hits_as_the_server_scored_them(keyed, minilm_dir, tmp_path):
    from multiembed.milvus import MilvusStore

    spec = SPECS["cohere"]
    with (
        rerank_server(spec) as server,
        MilvusStore(
            str(tmp_path / "x.db"), "docs", modality="text", model=str(minilm_dir), device="cpu"
        ) as store,
    ):
        store.add(DOCS)
        plain = store.search(QUERY, limit=4)
        reranked = store.search(QUERY, limit=4, rerank=reranker(spec, server.url))
        texts = [hit.fields["text"] for hit in plain]
        want = expected(QUERY, texts, 0)
        assert [hit.fields["text"] for hit in reranked] == [texts[index] for index, _ in want]
        assert [hit.score for hit in reranked] == pytest.approx([score for _, score in want])
        assert {hit.score_kind for hit in reranked} == {"rerank"}
        assert server.requests[-1].body["documents"] == texts
