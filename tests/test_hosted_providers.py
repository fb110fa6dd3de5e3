"""Every hosted provider against a real HTTP server on 127.0.0.1 speaking that provider's documented
wire format: the handler checks what the provider checks (key header, required fields, input-type
values, its per-request limit) and answers in the provider's shape. Covered for each: vectors equal
the server's, query/document input types, batching at the limit, 429 + Retry-After, a refused key
as one line without the key, a missing key, published dims without a request."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pytest

import multiembed
from multiembed import BackendError, ConfigError, model
from multiembed.cli import main
from multiembed.hosted.http import RequestRejected
from multiembed.hosted.provider import get_provider
from tests.provider_server import ProviderServer, provider_server

KEY = "test-secret-key-123"
WRONG = "wrong-key-999"
DIM = 8
MODEL = "test-model"


def vector_of(text: str, dim: int | None = None) -> list[float]:
    """What the test server answers for a text: fixed, different per text, ``dim`` long."""
    digest = b"".join(hashlib.sha256(f"{text}/{i}".encode()).digest() for i in range(1 + (dim or DIM) // 32))
    return [(byte - 128) / 128 for byte in digest[: dim or DIM]]


class Refuse(Exception):
    """Raised by a wire's parser: the provider would answer ``status`` with ``body``."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def need(condition: bool, status: int, body: Any) -> None:
    if not condition:
        raise Refuse(status, body)


def strings(value: Any, limit: int) -> bool:
    return isinstance(value, list) and 1 <= len(value) <= limit and all(isinstance(t, str) for t in value)


def openai_shape(vectors: list[list[float]], body: dict) -> dict:
    data = [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data[::-1], "model": body.get("model", "served"), "usage": {}}


# ---- each provider's request checks: (texts, input type sent, size asked for) ------------------------
def voyage(body: dict) -> tuple[list[str], Any, Any]:
    bad = {"detail": "Request body is invalid"}
    need(isinstance(body.get("model"), str) and strings(body.get("input"), 1000), 400, bad)
    need(body.get("input_type") in (None, "query", "document"), 400, bad)
    need(isinstance(body.get("truncation", True), bool), 400, bad)
    return body["input"], body.get("input_type"), body.get("output_dimension")


def jina(body: dict) -> tuple[list[str], Any, Any]:
    tasks = ("retrieval.query", "retrieval.passage", "text-matching", "classification", "separation")
    need(isinstance(body.get("model"), str), 422, {"detail": "model is required"})
    need(strings(body.get("input"), 512), 400, {"detail": "Each input list can contain at most 512 items."})
    need(body.get("task") in tasks, 422, {"detail": f"Invalid task {body.get('task')!r}"})
    need(isinstance(body.get("late_chunking", False), bool), 422, {"detail": "late_chunking: bool"})
    return body["input"], body["task"], body.get("dimensions")


def cohere(body: dict) -> tuple[list[str], Any, Any]:
    types = ("search_document", "search_query", "classification", "clustering")
    need(isinstance(body.get("model"), str), 400, {"message": "model is required"})
    need(body.get("input_type") in types, 400, {"message": "invalid input_type"})
    need(strings(body.get("texts"), 96), 400, {"message": "too many texts: the maximum is 96"})
    need(body.get("embedding_types") == ["float"], 400, {"message": "invalid embedding_types"})
    need(body.get("truncate", "END") in ("NONE", "START", "END"), 400, {"message": "invalid truncate"})
    return body["texts"], body["input_type"], body.get("output_dimension")


def mistral(body: dict) -> tuple[list[str], Any, Any]:
    too_many = {"message": "Too many inputs in request, split into more batches."}
    need(isinstance(body.get("model"), str), 422, {"detail": "model: Field required"})
    need(strings(body.get("input"), 512), 400, too_many)
    return body["input"], None, body.get("output_dimension")


def gemini(body: dict) -> tuple[list[str], Any, Any]:
    def invalid(message: str) -> dict:
        return {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}

    requests = body.get("requests")
    too_many = invalid("* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch")
    need(isinstance(requests, list) and len(requests) <= 100, 400, too_many)
    tasks = {"RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLUSTERING"}
    for request in requests:
        need(request.get("model") == f"models/{MODEL}", 400, invalid("model must match the batch's model"))
        need(isinstance(request["content"]["parts"][0]["text"], str), 400, invalid("content is required"))
        need(request.get("taskType") in tasks, 400, invalid("invalid taskType"))
    kinds = {request["taskType"] for request in requests}
    texts = [request["content"]["parts"][0]["text"] for request in requests]
    return texts, kinds.pop() if len(kinds) == 1 else kinds, requests[0].get("outputDimensionality")


def nomic(body: dict) -> tuple[list[str], Any, Any]:
    types = ("search_query", "search_document", "classification", "clustering")
    need(strings(body.get("texts"), 50) and isinstance(body.get("model"), str), 422, {"detail": "invalid"})
    need(body.get("task_type") in types, 422, {"detail": f"Invalid task type: {body.get('task_type')}"})
    return body["texts"], body["task_type"], body.get("dimensionality")


def tei(body: dict, limit: int = 32) -> tuple[list[str], Any, Any]:
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    need(strings(texts, 10**6), 422, {"message": "invalid input", "code": 422, "type": "Validation"})
    message = f"batch size {len(texts)} > maximum allowed batch size {limit}"
    need(len(texts) <= limit, 413, {"message": message, "code": 413, "type": "Validation"})
    return texts, None, body.get("dimensions")


@dataclass(frozen=True)
class Wire:
    provider: str
    env: str  # the key's variable
    base: str  # what follows the server's address in base_url
    path: str  # where the provider's requests go
    parse: Callable[[dict], tuple[list[str], Any, Any]]
    answer: Callable[[list[list[float]], dict], Any]
    refusal: tuple[int, Any]  # what a bad key gets
    message: str  # the provider's words in that refusal
    types: tuple[Any, Any]  # input types of (queries, documents)
    call_type: Any  # what __call__ sends
    dropin: Callable[..., Any]  # the drop-in class for MODEL, given base_url (and api_key)
    auth_header: str = "authorization"
    bearer: bool = True


GEMINI_BAD_KEY = {  # what Gemini answers a bad key: 400, with the reason in the details
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
    }
}

# fmt: off
WIRES = [
    Wire(
        "voyage", "VOYAGE_API_KEY", "/v1", "/v1/embeddings", voyage, openai_shape,
        (401, {"detail": "Provided API key is invalid."}), "Provided API key is invalid.",
        ("query", "document"), None,
        lambda **kw: model.dense.VoyageEmbeddingFunction(MODEL, dimension=DIM, **kw),
    ),
    Wire(
        "jina", "JINAAI_API_KEY", "/v1", "/v1/embeddings", jina, openai_shape,
        (401, {"detail": "Invalid API key"}), "Invalid API key",
        ("retrieval.query", "retrieval.passage"), "retrieval.passage",
        lambda **kw: model.dense.JinaEmbeddingFunction(MODEL, dimensions=DIM, **kw),
    ),
    Wire(
        "cohere", "CO_API_KEY", "/v2", "/v2/embed", cohere,
        lambda vectors, body: {"id": "e1", "embeddings": {"float": vectors}, "texts": body["texts"]},
        (401, {"id": "e2", "message": "invalid api token"}), "invalid api token",
        ("search_query", "search_document"), "search_document",
        lambda **kw: model.dense.CohereEmbeddingFunction(MODEL, **kw),
    ),
    Wire(
        "mistral", "MISTRAL_API_KEY", "/v1", "/v1/embeddings", mistral, openai_shape,
        (401, {"message": "Unauthorized", "request_id": "r1"}), "Unauthorized",
        (None, None), None,
        lambda **kw: model.dense.MistralAIEmbeddingFunction(model_name=MODEL, **kw),
    ),
    Wire(
        "gemini", "GEMINI_API_KEY", "/v1beta", f"/v1beta/models/{MODEL}:batchEmbedContents", gemini,
        lambda vectors, body: {"embeddings": [{"values": v} for v in vectors]},
        (400, GEMINI_BAD_KEY), "API key not valid. Please pass a valid API key.",
        ("RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT"), "RETRIEVAL_DOCUMENT",
        lambda **kw: model.dense.GeminiEmbeddingFunction(MODEL, config={"output_dimensionality": DIM}, **kw),
        auth_header="x-goog-api-key", bearer=False,
    ),
    Wire(
        "nomic", "NOMIC_API_KEY", "", "/v1/embedding/text", nomic,
        lambda vectors, body: {"embeddings": vectors, "usage": {"total_tokens": 1}, "model": body["model"]},
        (401, {"detail": "Invalid API key"}), "Invalid API key",
        ("search_query", "search_document"), "search_document",
        lambda **kw: model.dense.NomicEmbeddingFunction(MODEL, dimensions=DIM, **kw),
    ),
    Wire(
        "tei", "TEI_API_KEY", "", "/v1/embeddings", tei, openai_shape,
        (401, b""), "HTTP 401",  # TEI's --api-key check answers a bare 401
        (None, None), None,
        lambda base_url, **kw: model.dense.TEIEmbeddingFunction(base_url, dimensions=DIM, **kw),
    ),
]
BY_NAME = {wire.provider: wire for wire in WIRES}
# fmt: on


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[ProviderServer, dict]]:
    """One server for the module (each server costs ~0.5 s to stop); tests install their handler."""
    current: dict[str, Any] = {}
    with provider_server(lambda path, headers, body: current["handler"](path, headers, body)) as server:
        yield server, current


@pytest.fixture
def serve(live) -> Callable[..., ProviderServer]:
    server, current = live

    def install(
        wire: Wire, *, busy: int = 0, retry_after: str = "0", parse: Callable | None = None, keyless=False
    ) -> ProviderServer:
        """Answer as ``wire``: 429 for the first ``busy`` requests; ``keyless``: a server without a key."""
        calls = {"n": 0}

        def handle(path: str, headers: dict, body: Any):
            calls["n"] += 1
            if path != wire.path:
                return 404, {"message": f"no route {path}"}, {}
            key = headers.get(wire.auth_header, "")
            if not keyless and key != (f"Bearer {KEY}" if wire.bearer else KEY):
                status, answer = wire.refusal
                return status, answer, {}
            if calls["n"] <= busy:
                return 429, {"message": "Rate limit reached, slow down"}, {"Retry-After": retry_after}
            try:
                texts, _, size = (parse or wire.parse)(body)
            except Refuse as refused:
                return refused.status, refused.body, {}
            return 200, wire.answer([vector_of(t, size) for t in texts], body), {}

        server.requests.clear()
        current["handler"] = handle
        return server

    return install


@pytest.fixture
def keys(monkeypatch) -> None:
    for wire in WIRES:
        monkeypatch.setenv(wire.env, KEY)


def sent(wire: Wire, server: ProviderServer) -> list[tuple[list[str], Any]]:
    """(texts, input type) of each request the server got, leaving out the one-word dim probe."""
    parsed = [wire.parse(request.body)[:2] for request in server.requests]
    return [(texts, kind) for texts, kind in parsed if texts != ["dim"]]


def assert_servers_vectors(texts: list[str], vectors: list[np.ndarray]) -> None:
    assert len(vectors) == len(texts) and all(v.dtype == np.float32 for v in vectors)
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vector, vector_of(text), atol=1e-6)


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.provider)
def test_vectors_and_input_types(wire, serve):
    server = serve(wire)
    ef = wire.dropin(base_url=server.url + wire.base)
    queries, documents = ["where is the red bicycle", "milvus"], ["a red bicycle", "the lazy dog", "vectors"]
    assert_servers_vectors(queries, ef.encode_queries(queries))
    assert_servers_vectors(documents, ef.encode_documents(documents))
    assert_servers_vectors(["called"], ef(["called"]))
    assert ef.dim == DIM
    query_type, document_type = wire.types
    assert sent(wire, server) == [
        (queries, query_type),
        (documents, document_type),
        (["called"], wire.call_type),
    ]


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.provider)
def test_batches_stay_within_the_providers_limit(wire, serve):
    server = serve(wire)
    limit = get_provider(wire.provider).max_batch
    texts = [f"text {i}" for i in range(limit + 1)]
    encoder = multiembed.load(
        "hosted",
        f"{wire.provider}:{MODEL}",
        base_url=server.url + wire.base,
        dimensions=DIM,
        batch_size=limit,
    )
    assert_servers_vectors(texts, encoder.encode_documents(texts))
    assert sorted(len(batch) for batch, _ in sent(wire, server)) == [1, limit]
    with pytest.raises(ConfigError, match=f"batch_size must be a whole number <= {limit}"):
        multiembed.load("hosted", f"{wire.provider}:{MODEL}", base_url=server.url, batch_size=limit + 1)


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.provider)
def test_a_429_is_retried_after_the_servers_retry_after(wire, serve):
    server = serve(wire, busy=1, retry_after="0")
    provider = get_provider(wire.provider)(MODEL, base_url=server.url + wire.base, dimensions=DIM)
    waits: list[float] = []
    provider.client.sleep = waits.append
    assert_servers_vectors(["hello"], provider.embed(["hello"], "query"))
    assert len(server.requests) == 2 and waits == [0.0]  # backoff alone would have waited >= 0.5 s


@pytest.mark.usefixtures("keys")
def test_retry_after_really_waits(serve):
    server = serve(BY_NAME["voyage"], busy=1, retry_after="1")
    ef = model.dense.VoyageEmbeddingFunction(MODEL, dimension=DIM, base_url=server.url + "/v1")
    started = time.monotonic()
    assert_servers_vectors(["hello"], ef.encode_queries(["hello"]))
    assert time.monotonic() - started >= 0.9 and len(server.requests) == 2


@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.provider)
def test_a_refused_key_is_one_line_with_the_providers_message_and_never_the_key(wire, serve):
    server = serve(wire)
    ef = wire.dropin(base_url=server.url + wire.base, api_key=WRONG)
    with pytest.raises(BackendError) as caught:
        ef.encode_documents(["one", "two", "three"])
    message = str(caught.value)
    assert wire.message in message and f"HTTP {wire.refusal[0]}" in message
    assert WRONG not in message and "\n" not in message
    # the run stops (Gemini's 400 for a bad key counts as 401): not retried, not split per item
    assert isinstance(caught.value, RequestRejected) and caught.value.status == 401
    assert len(server.requests) == 1


@pytest.mark.parametrize("wire", [w for w in WIRES if w.provider != "tei"], ids=lambda w: w.provider)
def test_no_key_anywhere_is_a_config_error_naming_the_variable(wire, monkeypatch):
    for variable in get_provider(wire.provider).key_env:
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ConfigError, match=f"needs an API key: set {wire.env}"):
        wire.dropin()


@pytest.mark.parametrize(
    ("wire", "variable"),
    [
        ("jina", "JINA_API_KEY"),
        ("cohere", "COHERE_API_KEY"),
        ("mistral", "MISTRALAI_API_KEY"),
        ("gemini", "GOOGLE_API_KEY"),
        ("tei", "TEI_API_KEY"),
    ],
)
def test_the_other_key_variables_are_read(wire, variable, serve, monkeypatch):
    wire = BY_NAME[wire]
    for name in get_provider(wire.provider).key_env:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, KEY)
    server = serve(wire)
    assert_servers_vectors(
        ["hello"], wire.dropin(base_url=server.url + wire.base).encode_documents(["hello"])
    )


def test_tei_needs_no_key(serve, monkeypatch):
    monkeypatch.delenv("TEI_API_KEY", raising=False)
    server = serve(BY_NAME["tei"], keyless=True)
    ef = model.dense.TEIEmbeddingFunction(server.url)
    assert_servers_vectors(["a", "b"], ef(["a", "b"]))
    assert ef.dim == DIM  # learned from one request, as pymilvus.model does
    assert all("authorization" not in request.headers for request in server.requests)


@pytest.mark.usefixtures("keys")
def test_a_tei_server_with_a_smaller_batch_limit_still_embeds_everything(serve):
    server = serve(BY_NAME["tei"], parse=lambda body: tei(body, limit=8))
    texts = [f"text {i}" for i in range(20)]
    encoder = multiembed.load("hosted", "tei", base_url=server.url, dimensions=DIM)
    result = encoder.encode(texts, progress=False)
    assert not result.errors
    assert result.indices == list(range(20))
    assert_servers_vectors(texts, list(result.vectors))


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize(
    ("make", "dim"),
    [
        (lambda url: model.dense.VoyageEmbeddingFunction(base_url=url), 1024),
        (lambda url: model.dense.VoyageEmbeddingFunction(dimension=256, base_url=url), 256),
        (lambda url: model.dense.JinaEmbeddingFunction(base_url=url), 1024),
        (lambda url: model.dense.CohereEmbeddingFunction(base_url=url), 384),
        (lambda url: model.dense.CohereEmbeddingFunction("embed-english-v3.0", base_url=url), 1024),
        (lambda url: model.dense.MistralAIEmbeddingFunction(base_url=url), 1024),
        (lambda url: model.dense.GeminiEmbeddingFunction(base_url=url), 3072),
        (lambda url: model.dense.GeminiEmbeddingFunction("models/text-embedding-004", base_url=url), 768),
        (lambda url: model.dense.NomicEmbeddingFunction(base_url=url), 768),
        (lambda url: model.dense.TEIEmbeddingFunction(url, dimensions=384), 384),
    ],
)
def test_published_dims_need_no_request(make, dim):
    assert make("http://127.0.0.1:9").dim == dim  # nothing listens on port 9


@pytest.mark.usefixtures("keys")
def test_a_voyage_dimension_the_model_lacks_is_refused_as_pymilvus_does():
    with pytest.raises(ValueError, match=r"The provided dimension \(300\) is not supported"):
        model.dense.VoyageEmbeddingFunction("voyage-3-large", dimension=300)
    with pytest.raises(ValueError, match="int8 or uint8 is not supported"):
        model.dense.CohereEmbeddingFunction(embedding_types=["int8"])


# fmt: off
CALL_TASKS = {  # a drop-in given another task for __call__, and the task it must send
    "jina": (partial(model.dense.JinaEmbeddingFunction, MODEL, task="text-matching"), "text-matching"),
    "cohere": (partial(model.dense.CohereEmbeddingFunction, MODEL, input_type="clustering"), "clustering"),
    "gemini": (partial(model.dense.GeminiEmbeddingFunction, MODEL, config={
        "task_type": "SEMANTIC_SIMILARITY", "output_dimensionality": DIM
    }), "SEMANTIC_SIMILARITY"),
    "nomic": (partial(model.dense.NomicEmbeddingFunction, MODEL, task_type="clustering", dimensions=DIM),
              "clustering"),
}
# fmt: on


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize("name", CALL_TASKS)
def test_call_uses_the_task_the_constructor_was_given(name, serve):
    wire, (make, called) = BY_NAME[name], CALL_TASKS[name]
    server = serve(wire)
    ef = make(base_url=server.url + wire.base)
    assert_servers_vectors(["x"], ef(["x"]))
    assert_servers_vectors(["q"], ef.encode_queries(["q"]))
    assert sent(wire, server) == [(["x"], called), (["q"], wire.types[0])]


@pytest.mark.usefixtures("keys")
def test_cli_encodes_through_a_tei_server(serve, tmp_path, capsys):
    server = serve(BY_NAME["tei"])
    source = tmp_path / "texts.txt"
    source.write_text("a red bicycle\nthe lazy dog\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    argv = ["encode", "--modality", "hosted", "--model", "tei", "--option", f"base_url={server.url}"]
    assert main([*argv, str(source), "-o", str(out)]) == 0
    np.testing.assert_allclose(
        np.load(out), [vector_of("a red bicycle"), vector_of("the lazy dog")], atol=1e-6
    )
    assert "embedded 2 of 2 items, 0 failed" in capsys.readouterr().err
