"""`multiembed serve` under load and faults: size limits, clients that leave, dynamic batching, the
bounded queue, dead and loading workers, and stopping; against a real uvicorn server on 127.0.0.1
with real tiny models (tests/serve_support.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

import multiembed
from multiembed.serve.app import create_app
from multiembed.serve.batcher import Batcher, ItemFailure, WorkerDead, stop_all
from tests.serve_support import (
    Library,
    assert_same,
    build_library,
    embed_one,
    error_of,
    raw_request,
    running_server,
    still_serving,
    text_only,
    vectors_of,
    wait_until_loaded,
)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    return build_library(tmp_path_factory.mktemp("serve-limits"))


@pytest.fixture(scope="module")
def encoders(library: Library) -> dict[str, Any]:
    return {"text": multiembed.load("text", str(library.text_model), device="cpu")}


class Gate:
    """Holds an encoder inside its forward pass (its batch hook) until ``release`` is set."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.entered, self.release = threading.Event(), threading.Event()

    def _hook(self, batch: Any) -> None:
        self.entered.set()
        self.release.wait(30)

    def __enter__(self) -> Gate:
        self.encoder.batch_observer = self._hook
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.encoder.batch_observer = None


def test_oversized_bodies_get_413_declared_or_streamed(library: Library) -> None:
    app = create_app(text_only(library, max_request_bytes=64 * 1024))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        wait_until_loaded(url)
        big = {"model": "text", "input": ["word " * 20_000]}
        assert "too large" in error_of(http.post("/v1/embeddings", json=big), 413)["message"]
        chunks = (b"x" * 8192 for _ in range(20))
        streamed = http.post("/v1/embeddings", content=chunks, headers={"content-type": "application/json"})
        assert error_of(streamed, 413)
        upload = http.post(
            "/v1/embeddings", data={"model": "text"}, files={"file": ("big.txt", b"a " * 50_000)}
        )
        assert error_of(upload, 413)
        still_serving(http)


def test_clients_that_hang_up_mid_request_do_not_hurt_the_worker(library: Library) -> None:
    app = create_app(text_only(library, max_wait_ms=0))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        wait_until_loaded(url)
        batcher = app.state.pool.find("text").batcher
        head = b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        raw_request(url, head + b'Content-Length: 100000\r\n\r\n{"model": "text", "input": [')  # cut short
        # A request whose client hangs up while it waits behind a busy worker is never embedded.
        with Gate(batcher.encoder) as gate, ThreadPoolExecutor(1) as threads:
            first = threads.submit(embed_one, url, "keeps the worker busy")
            assert gate.entered.wait(10)
            body = json.dumps({"model": "text", "input": ["a long wait"] * 37}).encode()
            request = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
            for hang_up_when in (None, lambda: batcher.queued == 37):  # gone at once; gone once queued
                raw_request(url, request, hang_up_when)
                deadline = time.monotonic() + 10
                while batcher.queued and time.monotonic() < deadline:  # the server saw it leave
                    time.sleep(0.02)
                assert batcher.queued == 0
            gate.release.set()
            assert first.result().status_code == 200
        assert batcher.state == "ok"
        still_serving(http)
        assert all(items != 37 for _, items in batcher.batches), list(batcher.batches)


def record_rows(rows: list[int], batch: Any) -> None:
    """The encoder's batch hook: how many texts each forward pass saw."""
    rows.append(int(batch["input_ids"].shape[0]))


def test_concurrent_requests_are_merged_into_one_forward_pass(
    library: Library, encoders: dict[str, Any]
) -> None:
    texts = [
        f"{word} bicycle" for word in ["red", "green", "blue", "lazy", "quick", "brown", "brick", "wall"]
    ]
    expected = encoders["text"].encode(texts, progress=False).vectors
    for batching in (True, False):
        app = create_app(text_only(library, max_wait_ms=400, batching=batching))
        with running_server(app) as url:
            wait_until_loaded(url)
            batcher = app.state.pool.find("text").batcher
            rows: list[int] = []
            batcher.encoder.batch_observer = functools.partial(record_rows, rows)
            with ThreadPoolExecutor(len(texts)) as threads:
                responses = list(threads.map(functools.partial(embed_one, url), texts))
            assert_same(np.concatenate([vectors_of(response) for response in responses]), expected)
            merged = list(batcher.batches)
            assert sum(items for _, items in merged) == len(texts)
            if batching:
                assert max(requests for requests, _ in merged) > 1 and max(rows) > 1, merged
            else:
                assert all(requests == 1 for requests, _ in merged) and max(rows) == 1


def test_a_dead_worker_turns_healthz_and_its_requests_into_503(library: Library) -> None:
    app = create_app(text_only(library))
    with TestClient(app) as test_client:
        assert test_client.post("/v1/embeddings", json={"model": "text", "input": "fine"}).status_code == 200

        def broken(batch: Any) -> None:
            raise RuntimeError("the model is broken")

        app.state.pool.find("text").batcher.encoder.batch_observer = broken
        assert (
            "broken"
            in error_of(test_client.post("/v1/embeddings", json={"model": "text", "input": ["a", "b"]}), 503)[
                "message"
            ]
        )
        health = test_client.get("/healthz")
        assert health.status_code == 503 and health.json()["models"]["text"] == "dead"
        assert error_of(test_client.post("/v1/embeddings", json={"model": "text", "input": "c"}), 503)


def test_inputs_that_fail_alike_refuse_their_request_not_the_model(library: Library) -> None:
    """Two huge uploads failing the same way look like a broken model; the worker checks before dying."""
    app = create_app(text_only(library))
    with TestClient(app) as test_client:
        embed = lambda texts: test_client.post("/v1/embeddings", json={"model": "text", "input": texts})  # noqa: E731
        assert embed("fine").status_code == 200

        app.state.pool.find("text").batcher.encoder.batch_observer = out_of_memory_for_long_texts
        refused = error_of(embed(["short", LONG, LONG, LONG]), 400)
        assert refused["item"] == 1 and "can't allocate memory" in refused["message"]
        assert test_client.get("/healthz").json()["models"]["text"] == "ok"
        assert embed(["short again", "and fine"]).status_code == 200
        # Adding to a collection runs on the same worker: the same check, and a 400
        added = test_client.post("/collections/notes/items", json={"items": [LONG + "x", LONG + "y"]})
        assert "fail alike: RuntimeError: DefaultCPUAllocator" in error_of(added, 400)["message"]
        assert test_client.get("/healthz").json()["models"]["text"] == "ok"


def out_of_memory_for_long_texts(batch: Any) -> None:
    """A batch hook: any batch holding a text of more than 12 tokens runs out of memory."""
    if batch["attention_mask"].shape[1] > 12:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9876543 bytes")


LONG = "a text with far more than twelve tokens in it, " * 3


def test_merged_requests_failing_alike_refuse_only_the_bad_one_and_a_model_never_seen_working_dies(
    library: Library,
) -> None:
    encoder = multiembed.load("text", str(library.text_model), device="cpu")

    async def scenario(batcher: Batcher, warm_up: bool) -> tuple[list[Any], str]:
        batcher.start()
        await batcher.ready()
        if warm_up:
            await batcher.encode(["fine"], "document")
        encoder.batch_observer = out_of_memory_for_long_texts
        try:
            requests = [["short one"], [LONG, LONG, LONG], ["short two", "and three"]]
            calls = [batcher.encode(texts, "document") for texts in requests]
            return await asyncio.gather(*calls, return_exceptions=True), batcher.state
        finally:
            encoder.batch_observer = None
            await asyncio.to_thread(batcher.stop)

    merged = Batcher("text", lambda: encoder, max_wait_ms=300)  # the three requests run as one batch
    (first, bad, last), state = asyncio.run(scenario(merged, warm_up=True))
    assert state == "ok" and (3, 6) in merged.batches, list(merged.batches)
    assert len(first.ids) == 1 and len(last.ids) == 2
    assert isinstance(bad, ItemFailure) and bad.index == 0 and "can't allocate memory" in bad.reason

    fresh = Batcher("text", lambda: encoder, max_wait_ms=300)  # nothing has worked yet: nothing to check
    results, state = asyncio.run(scenario(fresh, warm_up=False))
    assert state == "dead" and all(isinstance(result, WorkerDead) for result in results), results
    assert "the model fails on every item" in str(fresh.error)


def test_a_full_queue_answers_503_with_retry_after(library: Library) -> None:
    app = create_app(text_only(library, max_queue=1, max_wait_ms=0))
    with running_server(app) as url:
        wait_until_loaded(url)
        batcher = app.state.pool.find("text").batcher
        with Gate(batcher.encoder) as gate, ThreadPoolExecutor(2) as threads:
            running = threads.submit(embed_one, url, "in the forward pass")
            assert gate.entered.wait(10)
            waiting = threads.submit(embed_one, url, "waits in the queue")
            deadline = time.monotonic() + 10
            while batcher.queued < 1:
                assert time.monotonic() < deadline, "the waiting request never reached the queue"
                time.sleep(0.01)
            refused = embed_one(url, "one too many")
            assert "busy" in error_of(refused, 503)["message"]
            assert refused.headers["retry-after"] == "1"
            gate.release.set()
            assert running.result().status_code == waiting.result().status_code == 200
        assert batcher.queued == 0 and embed_one(url, "room again").status_code == 200


def gated_load(gate: threading.Event, encoder: Any) -> Any:
    """A model load that takes until ``gate`` is set (a large model, as far as the server can tell)."""
    gate.wait(30)
    return encoder


def test_healthz_is_503_loading_until_every_model_has_loaded(
    library: Library, encoders: dict[str, Any]
) -> None:
    app = create_app(text_only(library))
    gate = threading.Event()
    served = app.state.pool.find("text")
    served.batcher = Batcher("text", functools.partial(gated_load, gate, encoders["text"]))
    with TestClient(app) as test_client:
        loading = test_client.get("/healthz")
        assert loading.status_code == 503
        assert loading.json() == {"status": "loading", "models": {"text": "loading"}}
        gate.set()
        deadline = time.monotonic() + 10
        while (health := test_client.get("/healthz")).status_code != 200:
            assert time.monotonic() < deadline, health.text
            time.sleep(0.02)
        assert health.json() == {"status": "ok", "models": {"text": "ok"}}


def test_stopping_does_not_wait_for_models_still_loading(encoders: dict[str, Any]) -> None:
    gate = threading.Event()
    loading = [Batcher(f"m{i}", functools.partial(gated_load, gate, encoders["text"])) for i in range(3)]
    for batcher in loading:
        batcher.start()
    started = time.monotonic()
    stop_all(loading, timeout=5)
    assert time.monotonic() - started < 4.0  # well under the 5 s it would wait for a loading model
    gate.set()  # each finishes loading, sees it was told to stop, and ends
    deadline = time.monotonic() + 10
    while any(batcher.state == "loading" for batcher in loading) and time.monotonic() < deadline:
        time.sleep(0.01)
    for batcher in loading:
        assert batcher.state == "dead" and "shutting down" in str(batcher.error)


def test_a_request_cancelled_while_queued_is_not_embedded(encoders: dict[str, Any], library: Library) -> None:
    encoder = multiembed.load("text", str(library.text_model), device="cpu")

    async def scenario() -> list[tuple[int, int]]:
        batcher = Batcher("text", lambda: encoder, max_wait_ms=0)
        batcher.start()
        await batcher.ready()
        with Gate(encoder) as gate:
            first = asyncio.ensure_future(batcher.encode(["first"], "document"))
            assert await asyncio.to_thread(gate.entered.wait, 10)
            second = asyncio.ensure_future(batcher.encode(["second", "left"], "document"))
            await asyncio.sleep(0.05)  # submitted: it waits behind the first
            second.cancel()
            gate.release.set()
            await first
        await batcher.encode(["third"], "document")  # runs after whatever was queued before it
        await asyncio.to_thread(batcher.stop)
        return list(batcher.batches)

    assert asyncio.run(scenario()) == [(1, 1), (1, 1)]
