"""The hosted modality and OpenAIEmbeddingFunction against a real HTTP server on 127.0.0.1 that
speaks OpenAI's embeddings format: batching, 429 + Retry-After, auth errors, one bad item, Milvus."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

import multiembed
from multiembed import BackendError, ConfigError, InputError, model
from multiembed.hosted.http import retry_after_seconds
from tests.provider_server import provider_server

KEY = "sk-test-secret-key-123"
DIM = 8


def vector_of(text: str) -> list[float]:
    """What the test server answers for a text: fixed, different per text, like a real model."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(byte - 128) / 128 for byte in digest[:DIM]]


def openai_answer(body: dict) -> dict:
    data = [
        {"object": "embedding", "index": i, "embedding": vector_of(t)} for i, t in enumerate(body["input"])
    ]
    return {"object": "list", "data": list(reversed(data)), "model": body["model"], "usage": {}}


def openai_server(fail_first: int = 0, retry_after: str | None = None, bad_word: str | None = None):
    calls = {"n": 0}

    def handle(path: str, headers: dict, body: dict):
        calls["n"] += 1
        if headers.get("authorization") != f"Bearer {KEY}":
            return (
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided: sk-te***23.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                {},
            )
        if calls["n"] <= fail_first:
            extra = {"Retry-After": retry_after} if retry_after else {}
            return 429, {"error": {"message": "Rate limit reached", "type": "requests"}}, extra
        if bad_word and any(bad_word in text for text in body["input"]):
            return 400, {"error": {"message": "This model's maximum context length is 8192 tokens"}}, {}
        return 200, openai_answer(body), {}

    return provider_server(handle)


def test_openai_function_batches_and_returns_the_servers_vectors(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    texts = [f"text number {i}" for i in range(5)]
    with openai_server() as server:
        ef = model.dense.OpenAIEmbeddingFunction(
            "text-embedding-3-small", base_url=server.url + "/v1", dimensions=DIM
        )
        vectors = ef.encode_documents(texts)
        assert ef.dim == DIM
        assert len(vectors) == 5 and all(v.dtype == np.float32 for v in vectors)
        for text, vector in zip(texts, vectors, strict=True):
            np.testing.assert_allclose(vector, vector_of(text), atol=1e-6)
        assert [r.path for r in server.requests] == ["/v1/embeddings"]
        assert server.requests[0].body["model"] == "text-embedding-3-small"
        assert server.requests[0].body["dimensions"] == DIM
        small_batches = multiembed.load(
            "hosted", "openai:my-model", base_url=server.url + "/v1", batch_size=2
        )
        small_batches.encode_documents(texts)
        # the dim of an unpublished model costs one one-word request, then batches of 2
        assert [r.body["input"] for r in server.requests[1:2]] == [["dim"]]
        assert sorted(len(r.body["input"]) for r in server.requests[2:]) == [1, 2, 2]


def test_published_dims_need_no_request_and_a_wrong_answer_is_named(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert (
        model.dense.OpenAIEmbeddingFunction("text-embedding-3-large", base_url="http://127.0.0.1:9").dim
        == 3072
    )
    with openai_server() as server:
        ef = model.dense.OpenAIEmbeddingFunction("text-embedding-3-small", base_url=server.url)
        with pytest.raises(BackendError, match=r"the model gave shape \(1, 8\), expected \(1, 1536\)"):
            ef(["hello"])


def test_429_is_retried_after_the_servers_retry_after(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with openai_server(fail_first=1, retry_after="1") as server:
        ef = model.dense.OpenAIEmbeddingFunction("test-model", base_url=server.url, dimensions=DIM)
        started = time.monotonic()
        vectors = ef(["hello"])
        waited = time.monotonic() - started
    assert len(server.requests) == 2 and waited >= 0.9
    np.testing.assert_allclose(vectors[0], vector_of("hello"), atol=1e-6)


def test_retry_after_as_an_http_date():
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds("soon") is None


def test_retries_give_up_with_one_line(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with openai_server(fail_first=100, retry_after="0") as server:
        ef = model.dense.OpenAIEmbeddingFunction(
            "test-model", base_url=server.url, dimensions=DIM, max_retries=2
        )
        with pytest.raises(
            BackendError, match=r"^OpenAI: .*still failing after 3 tries \(HTTP 429: Rate limit reached\)$"
        ):
            ef(["hello"])
    assert len(server.requests) == 3


def test_a_refused_key_is_one_line_with_the_providers_message_and_never_the_key():
    with openai_server() as server:
        ef = model.dense.OpenAIEmbeddingFunction(
            "test-model", api_key="sk-wrong-key-999", base_url=server.url, dimensions=DIM
        )
        with pytest.raises(BackendError) as caught:
            ef(["hello"])
    message = str(caught.value)
    assert "HTTP 401" in message and "Incorrect API key provided" in message
    assert "sk-wrong-key-999" not in message and "\n" not in message
    assert len(server.requests) == 1  # an auth error is not retried


def test_no_key_anywhere_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OpenAI needs an API key: set OPENAI_API_KEY"):
        model.dense.OpenAIEmbeddingFunction()


def test_one_refused_item_is_reported_and_the_rest_embedded(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with openai_server(bad_word="TOO-LONG") as server:
        encoder = multiembed.load("hosted", "openai", base_url=server.url, dimensions=DIM)
        result = encoder.encode(["fine", "a TOO-LONG text", "also fine"], progress=False)
        assert result.sources == ["0", "2"] or len(result.vectors) == 2
        assert [e.index for e in result.errors] == [1]
        assert "maximum context length" in result.errors[0].reason
        with pytest.raises(InputError, match="maximum context length"):
            encoder.encode_documents(["a TOO-LONG text"])


def test_a_hosted_collection_reopens_against_the_same_server(monkeypatch, tmp_path):
    from multiembed.milvus import MilvusStore

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    docs = ["a red bicycle", "milvus is a vector database", "the lazy dog"]
    with openai_server() as server:
        uri = str(tmp_path / "hosted.db")
        store = MilvusStore(
            uri, "docs", modality="hosted", model="openai:my-model", base_url=server.url, dimensions=DIM
        )
        store.add(docs)
        hits = store.search("milvus is a vector database", limit=1)
        assert hits[0].source == "#1" and hits[0].score == pytest.approx(1.0, abs=1e-5)
        store.close()
        reopened = MilvusStore(uri, "docs")
        assert reopened.encoder.config()["options"]["base_url"] == server.url
        assert reopened.encoder.dim == DIM
        assert KEY not in str(reopened.encoder.config())
        assert reopened.search("the lazy dog", limit=1)[0].source == "#2"
        reopened.close()
