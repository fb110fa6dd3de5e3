"""`multiembed serve`: the HTTP API against real tiny models and a real Milvus Lite database.

Requests go through FastAPI's TestClient. Limits and faults (a real uvicorn server) are in
test_serve_limits.py; keys, files and hostile queries in test_serve_safety.py.
"""

from __future__ import annotations

import base64
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import multiembed
from multiembed.serve.app import create_app
from tests.image_files import photo
from tests.serve_support import (
    Library,
    assert_same,
    b64,
    build_library,
    error_of,
    settings,
    still_serving,
    text_only,
    vectors_of,
    wait_healthy,
)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    return build_library(tmp_path_factory.mktemp("serve-library"))


@pytest.fixture(scope="module")
def client(library: Library) -> Iterator[TestClient]:
    with TestClient(create_app(settings(library))) as test_client:
        wait_healthy(test_client)  # /healthz is 503 while the models load
        yield test_client


@pytest.fixture(scope="module")
def encoders(library: Library) -> dict[str, Any]:
    return {
        "text": multiembed.load("text", str(library.text_model), device="cpu"),
        "clip": multiembed.load("image-text", str(library.clip_model), device="cpu"),
    }


# ---- embeddings ------------------------------------------------------------------------------------
def test_text_vectors_equal_the_encoders_in_both_formats(
    client: TestClient, encoders: dict[str, Any]
) -> None:
    texts = ["a red bicycle", "the lazy dog", "milvus"]
    expected = encoders["text"].encode(texts, progress=False).vectors
    response = client.post("/v1/embeddings", json={"model": "text", "input": texts})
    assert_same(vectors_of(response), expected)
    body = response.json()
    assert body["model"] == "text" and [item["index"] for item in body["data"]] == [0, 1, 2]
    packed = client.post(
        "/v1/embeddings", json={"model": "text", "input": texts, "encoding_format": "base64"}
    )
    decoded = [np.frombuffer(base64.b64decode(item["embedding"]), "<f4") for item in packed.json()["data"]]
    assert_same(np.stack(decoded), expected)
    # the model answers to its modality and to its path as well as to its name
    single = client.post("/v1/embeddings", json={"model": str(encoders["text"].model_id), "input": "milvus"})
    assert_same(vectors_of(single), expected[2:])


def test_images_as_base64_data_urls_and_uploads_equal_the_encoders(
    client: TestClient, library: Library, encoders: dict[str, Any]
) -> None:
    photos = library.photos[:3]
    expected = encoders["clip"].encode(photos, progress=False).vectors
    plain = client.post(
        "/v1/embeddings", json={"model": "clip", "modality": "image", "input": [b64(p) for p in photos]}
    )
    assert_same(vectors_of(plain), expected)
    urls = [f"data:image/png;base64,{b64(p)}" for p in photos]
    assert_same(
        vectors_of(client.post("/v1/embeddings", json={"model": "clip", "input": urls, "modality": "image"})),
        expected,
    )
    files = [("file", (p.name, p.read_bytes(), "application/octet-stream")) for p in photos]
    uploaded = client.post("/v1/embeddings", data={"model": "clip"}, files=files)
    assert_same(vectors_of(uploaded), expected)
    # text for a cross-modal model goes to its text tower (the default for JSON strings)
    texts = ["a red bicycle", "a brick wall"]
    queries = encoders["clip"].encode(texts, role="query", progress=False).vectors
    assert_same(vectors_of(client.post("/v1/embeddings", json={"model": "clip", "input": texts})), queries)


def test_a_corrupt_image_among_good_ones_is_named_and_the_server_goes_on(
    client: TestClient, library: Library
) -> None:
    inputs = [b64(library.photos[0]), b64(b"this is not an image at all"), b64(library.photos[1])]
    error = error_of(
        client.post("/v1/embeddings", json={"model": "clip", "modality": "image", "input": inputs}), 400
    )
    assert error["item"] == 1 and "input[1]" in error["message"] and "not an image" in error["message"]
    assert error["type"] == "invalid_request_error"
    good = client.post("/v1/embeddings", json={"model": "clip", "modality": "image", "input": [inputs[0]]})
    assert good.status_code == 200
    still_serving(client)


def test_bad_requests_get_the_right_4xx(client: TestClient) -> None:
    post = client.post
    malformed = post(
        "/v1/embeddings",
        content=b'{"model": "text", "input": [',
        headers={"content-type": "application/json"},
    )
    assert "malformed JSON" in error_of(malformed, 400)["message"]
    wrong = error_of(
        post("/v1/embeddings", json={"model": "clip", "modality": "image", "input": ["ok", "%%%"]}), 400
    )
    assert wrong["item"] == 1 and "base64" in wrong["message"]
    assert (
        "not served" in error_of(post("/v1/embeddings", json={"model": "nope", "input": "x"}), 404)["message"]
    )
    assert error_of(post("/v1/embeddings", json={"input": "no model"}), 422)["message"].startswith("model")
    empty_text = error_of(post("/v1/embeddings", json={"model": "text", "input": ["fine", " "]}), 400)
    assert empty_text["item"] == 1 and "empty text" in empty_text["message"]
    assert "empty" in error_of(post("/v1/embeddings", json={"model": "text", "input": []}), 400)["message"]
    assert (
        "token" in error_of(post("/v1/embeddings", json={"model": "text", "input": [[1, 2]]}), 400)["message"]
    )
    assert (
        "not 'audio'"
        in error_of(post("/v1/embeddings", json={"model": "text", "input": "x", "modality": "audio"}), 400)[
            "message"
        ]
    )
    assert (
        "not 7"
        in error_of(post("/v1/embeddings", json={"model": "text", "input": "x", "dimensions": 7}), 400)[
            "message"
        ]
    )
    assert error_of(post("/v1/embeddings", data={"model": "text"}, files=[]), 400)
    assert error_of(client.get("/no/such/route"), 404)
    for route in ("/v1/embeddings", "/collections/notes/search"):  # the parser's stack, not a 500
        deep = post(route, content=b"[" * 100_000, headers={"content-type": "application/json"})
        assert "nested too deeply" in error_of(deep, 400)["message"]
        nested = {"model": "text", "text": "x", "input": json.loads("[" * 900 + "]" * 900)}
        assert post(route, json=nested).status_code in (400, 422)
    key = "a" * 64
    for path in (f"/collections/notes/media/{key}%0A", f"/collections/notes/poster/{key}%0A"):
        assert "item ids are the 64 hex digits" in error_of(client.get(path), 404)["message"]
    by_id = post("/collections/notes/search", json={"id": key + "\n"})
    assert "item ids are the 64 hex digits" in error_of(by_id, 404)["message"]
    still_serving(client)


def test_models_and_health(client: TestClient, library: Library) -> None:
    models = client.get("/v1/models").json()
    cards = {card["id"]: card for card in models["data"]}
    assert models["object"] == "list" and {"text", "clip"} <= set(cards)
    assert cards["clip"]["modality"] == "image-text" and cards["clip"]["dimension"] == 16
    assert cards["text"]["owned_by"] == "multiembed" and cards["text"]["dimension"] == 32
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["models"]["text"] == "ok"


def test_openapi_lists_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ["/v1/embeddings", "/v1/models", "/healthz", "/collections", "/collections/{name}/search",
                 "/collections/{name}/items", "/collections/{name}/media/{item}",
                 "/collections/{name}/poster/{item}"]:  # fmt: skip
        assert path in paths, path
    content = paths["/v1/embeddings"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert client.get("/docs").status_code == 200


# ---- collections -----------------------------------------------------------------------------------
def test_collections_are_listed_with_what_they_hold(client: TestClient, library: Library) -> None:
    cards = {card["name"]: card for card in client.get("/collections").json()["collections"]}
    assert cards["notes"]["media"] == "text" and cards["notes"]["count"] >= len(library.texts)
    assert cards["photos"]["media"] == "image-text" and cards["photos"]["dimension"] == 16
    assert cards["photos"]["model"] == str(library.clip_model.resolve())


def test_text_search_filter_and_refusals(client: TestClient, library: Library) -> None:
    search = lambda body: client.post("/collections/notes/search", json=body)  # noqa: E731
    hits = search({"text": library.texts[2], "limit": 3}).json()["hits"]
    assert len(hits) == 3 and hits[0]["text"] == library.texts[2] and hits[0]["score"] > 0.999
    assert hits[0]["kind"] == "text" and hits[0]["media_url"] is None
    filtered = search({"text": "dog", "filter": 'text like "%fox%"'}).json()["hits"]
    assert filtered and all("fox" in hit["text"] for hit in filtered)
    assert "hybrid" in error_of(search({"text": "dog", "hybrid": True}), 400)["message"]
    assert "exactly one" in error_of(search({"text": "dog", "vector": [0.0] * 32}), 400)["message"]
    assert "exactly one" in error_of(search({}), 400)["message"]
    assert "Milvus" in error_of(search({"text": "dog", "filter": "no_such_field >>> 3"}), 400)["message"]
    assert "dims" in error_of(search({"vector": [0.1, 0.2]}), 400)["message"]
    assert (
        "does not exist"
        in error_of(client.post("/collections/nope/search", json={"text": "x"}), 404)["message"]
    )
    assert error_of(search({"text": "x", "limit": 0}), 422)


def test_image_search_by_text_vector_file_and_item(
    client: TestClient, library: Library, encoders: dict[str, Any]
) -> None:
    search = lambda **kwargs: client.post("/collections/photos/search", **kwargs)  # noqa: E731
    by_text = search(json={"text": "a red bicycle", "limit": 4}).json()["hits"]
    assert len(by_text) == 4 and all(hit["kind"] == "image" for hit in by_text)
    query = encoders["clip"].encode(["a red bicycle"], role="query", progress=False).vectors[0]
    by_vector = search(json={"vector": query.tolist(), "limit": 4}).json()["hits"]
    assert [hit["id"] for hit in by_vector] == [hit["id"] for hit in by_text]
    target = library.photos[1]
    upload = search(files={"file": (target.name, target.read_bytes())}, data={"limit": "2"}).json()["hits"]
    assert upload[0]["source"] == str(target) and upload[0]["score"] > 0.999 and len(upload) == 2
    as_base64 = search(json={"file": b64(target)}).json()["hits"]
    assert as_base64[0]["id"] == upload[0]["id"]
    like = search(json={"id": upload[0]["id"], "limit": 10}).json()["hits"]
    assert like and upload[0]["id"] not in {hit["id"] for hit in like}
    assert error_of(search(json={"id": "0" * 64}), 404)
    assert error_of(search(json={"id": "../etc/passwd"}), 404)


def test_a_collection_is_searched_with_the_model_it_records(library: Library) -> None:
    """A served model whose identity matches is reused; else the recorded one is loaded and served."""
    with TestClient(create_app(text_only(library))) as test_client:
        search = lambda name: test_client.post(f"/collections/{name}/search", json={"text": "a red bicycle"})  # noqa: E731
        assert search("notes").status_code == 200
        assert [card["id"] for card in test_client.get("/v1/models").json()["data"]] == ["text"]
        assert search("photos").json()["hits"][0]["kind"] == "image"
        cards = {card["id"]: card for card in test_client.get("/v1/models").json()["data"]}
        recorded = str(library.clip_model.resolve())
        assert set(cards) == {"text", recorded} and cards[recorded]["modality"] == "image-text"
        assert test_client.post("/v1/embeddings", json={"model": recorded, "input": "x"}).status_code == 200


def test_adding_items_skips_stored_ones_and_names_failures(client: TestClient, library: Library) -> None:
    new = "a green tractor drives along the field"
    response = client.post("/collections/notes/items", json={"items": [new, "  ", library.texts[0]]})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["added"] == 1 and report["skipped"] == 1 and len(report["ids"]) == 1
    assert report["failed"] == [{"item": 1, "reason": "empty text"}]
    hits = client.post("/collections/notes/search", json={"text": new, "limit": 1}).json()["hits"]
    assert hits[0]["text"] == new and hits[0]["source"].startswith("upload:")
    buffer = io.BytesIO()
    photo(77).save(buffer, format="PNG")
    files = [("file", ("../../etc/passwd", buffer.getvalue())), ("file", ("bad.png", b"not an image"))]
    uploaded = client.post("/collections/photos/items", files=files).json()
    assert uploaded["added"] == 1 and uploaded["failed"][0]["item"] == 1
    added = uploaded["ids"][0]
    # an upload's name is only a label: its item has no file to serve
    assert error_of(client.get(f"/collections/photos/media/{added}"), 404)
    hits = client.post(
        "/collections/photos/search", json={"file": b64(buffer.getvalue()), "limit": 1}
    ).json()["hits"]
    assert hits[0]["id"] == added and hits[0]["media_url"] is None
    assert hits[0]["source"] == "upload:../../etc/passwd"


def test_media_serves_only_recorded_regular_files(
    client: TestClient, library: Library, tmp_path: Path
) -> None:
    target = library.photos[0]
    hit = client.post("/collections/photos/search", json={"file": b64(target), "limit": 1}).json()["hits"][0]
    media = client.get(hit["media_url"])
    assert media.status_code == 200 and media.content == target.read_bytes()
    assert media.headers["content-type"] == "image/png"
    poster = client.get(hit["poster_url"])
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"
    assert poster.headers["content-type"] == "image/jpeg"
    ranged = client.get(hit["media_url"], headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.content == target.read_bytes()[:10]
    for bad in ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "0" * 64, hit["id"].upper()]:
        assert client.get(f"/collections/photos/media/{bad}").status_code == 404, bad
    assert client.get(f"/collections/notes/media/{hit['id']}").status_code == 404
    # a recorded path that is no longer a regular file is not served
    from multiembed.milvus import MilvusStore

    moved = tmp_path / "gone.png"
    photo(91).save(moved)
    with MilvusStore(
        library.uri, "scratch", modality="image-text", model=str(library.clip_model), device="cpu"
    ) as store:
        key = next(iter(store.iter_add([moved], progress=False))).ids[0]
    moved.unlink()
    moved.mkdir()
    assert "no file here" in error_of(client.get(f"/collections/scratch/media/{key}"), 404)["message"]


def test_the_command_refuses_what_it_cannot_serve_in_one_line(
    library: Library, capsys: pytest.CaptureFixture[str]
) -> None:
    from multiembed.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--model", "text"]) == 2
    assert "without an API key" in capsys.readouterr().err
    for bad in ("nan", "-1"):
        assert main(["serve", "--max-audio-seconds", bad]) == 2
        assert "--max-audio-seconds must be >= 0" in capsys.readouterr().err
    assert main(["serve", "--model", "text:/no/such/model"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["serve", "--model", "clip=image-text:clip"]) == 2  # not in this offline machine's cache
    err = capsys.readouterr().err  # the hint in serve's own syntax, not encode's --model PATH
    assert "is not available" in err and "(--model clip=image-text:/path/to/folder)" in err
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        arguments = ["serve", "--uri", library.uri, "--port", port, "--model", f"text:{library.text_model}"]
        assert main(arguments) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
