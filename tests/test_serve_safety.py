"""`multiembed serve` against what a stranger (or a mistake) could do: the API key and the cookie
the page carries it in, access logs, which files media routes serve (media root, symlinks,
collections not yet loaded), filters and vectors that try to escape or break a search, and a
database held by another process; real tiny models and Milvus Lite (tests/serve_support.py).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from multiembed.milvus import MilvusStore
from multiembed.serve.app import create_app
from multiembed.serve.settings import ServeSettings
from tests.image_files import photo
from tests.serve_support import (
    Library,
    b64,
    build_library,
    error_of,
    running_server,
    settings,
    text_only,
    wait_healthy,
)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    return build_library(tmp_path_factory.mktemp("serve-safety"))


@pytest.fixture(scope="module")
def client(library: Library) -> Iterator[TestClient]:
    with TestClient(create_app(settings(library))) as test_client:
        wait_healthy(test_client)
        yield test_client


def store_photos(library: Library, uri: str, name: str, files: list[Path]) -> list[str]:
    """Index ``files`` (as given: relative ones stay relative) into ``name`` with the tiny CLIP."""
    with MilvusStore(uri, name, modality="image-text", model=str(library.clip_model), device="cpu") as store:
        part = next(iter(store.iter_add(files, progress=False)))
    assert not part.errors, part.errors
    return list(part.ids)


def test_the_key_guards_every_route(library: Library) -> None:
    app = create_app(text_only(library, api_key="s3cret"))
    item = "0" * 64
    routes = [("GET", "/"), ("GET", "/healthz"), ("GET", "/v1/models"), ("GET", "/collections"),
              ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/static/index.html"), ("GET", "/nope"),
              ("POST", "/v1/embeddings"), ("POST", "/collections/notes/search"),
              ("POST", "/collections/notes/items"), ("GET", f"/collections/photos/media/{item}"),
              ("GET", f"/collections/photos/poster/{item}")]  # fmt: skip
    with TestClient(app) as test_client:
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                response = test_client.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"]["type"] == "authentication_error"
            allowed = test_client.request(method, path, headers={"Authorization": "Bearer s3cret"}, json={})
            assert allowed.status_code != 401, (method, path)
        assert test_client.get("/healthz?key=s3cret").status_code != 401
        test_client.cookies.clear()  # that GET set the cookie; ?key= alone must not open a POST
        assert (
            test_client.post("/v1/embeddings?key=s3cret", json={"model": "text", "input": "x"}).status_code
            == 401
        )


def test_the_page_key_becomes_an_httponly_cookie_and_leaves_the_url(library: Library) -> None:
    app = create_app(text_only(library, api_key="s3cret"))
    with TestClient(app) as browser:
        opened = browser.get("/?key=s3cret")
        assert opened.status_code == 200
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith("multiembed_key=s3cret")
        assert {"httponly", "samesite=strict", "path=/"} <= {p.strip().lower() for p in cookie.split(";")}
        # the cookie alone now opens every route, GET or POST (what the page's requests carry)
        assert browser.get("/collections").status_code == 200
        assert browser.post("/v1/embeddings", json={"model": "text", "input": "x"}).status_code == 200
        assert "set-cookie" not in browser.get("/collections").headers  # set only by ?key=
    with TestClient(app) as stranger:
        stranger.cookies.set("multiembed_key", "wrong")
        assert error_of(stranger.get("/collections"), 401)["type"] == "authentication_error"
        assert error_of(stranger.get("/?key=wrong"), 401) and "set-cookie" not in stranger.get("/").headers


def test_the_access_log_never_shows_the_key(library: Library) -> None:
    class Lines(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    app = create_app(text_only(library, api_key="s3cret"))
    lines = Lines()
    with running_server(app, log_level="info", access_log=True) as url:
        access = logging.getLogger("uvicorn.access")  # configured by now: our handler is not removed
        access.addHandler(lines)
        try:
            assert httpx.get(f"{url}/healthz?key=s3cret&other=1", timeout=30).status_code in (200, 503)
        finally:
            access.removeHandler(lines)
    assert any("/healthz?key=[redacted]&other=1" in line for line in lines.lines), lines.lines
    assert not any("s3cret" in line for line in lines.lines), lines.lines


def test_thumbnails_and_media_work_before_any_search(library: Library, tmp_path: Path) -> None:
    """A server just started has every Milvus Lite collection "released": media must load it."""
    uri = str(tmp_path / "fresh.db")
    ids = store_photos(library, uri, "fresh", library.photos[:2])
    with TestClient(create_app(text_only(library, uri=uri))) as test_client:
        poster = test_client.get(f"/collections/fresh/poster/{ids[0]}")
        assert poster.status_code == 200, poster.text
        assert poster.content[:2] == b"\xff\xd8"
        media = test_client.get(f"/collections/fresh/media/{ids[1]}")
        assert media.status_code == 200 and media.content == library.photos[1].read_bytes()


def test_a_database_held_by_another_process_is_503(library: Library, tmp_path: Path) -> None:
    uri = str(tmp_path / "held.db")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, uri], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with TestClient(create_app(text_only(library, uri=uri))) as test_client:
            listed = error_of(test_client.get("/collections"), 503)
            assert "another process" in listed["message"] and listed["type"] == "server_error"
            assert error_of(test_client.post("/collections/c/search", json={"text": "x"}), 503)
    finally:
        holder.kill()
        holder.wait()


HOLD = """import sys, time
from pymilvus import MilvusClient
client = MilvusClient(sys.argv[1])
client.create_collection("c", dimension=4)
print("ready", flush=True)
time.sleep(120)
"""


def test_relative_sources_resolve_against_the_media_root(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexed, elsewhere = tmp_path / "indexed", tmp_path / "elsewhere"
    for root, seed in ((indexed, 3), (elsewhere, 99)):
        (root / "photos").mkdir(parents=True)
        photo(seed).save(root / "photos" / "p1.png")  # elsewhere: a decoy at the same relative path
    uri = str(tmp_path / "relative.db")
    monkeypatch.chdir(indexed)
    [key] = store_photos(library, uri, "relative", [Path("photos/p1.png")])
    monkeypatch.chdir(elsewhere)
    assert ServeSettings().media_root == str(elsewhere)  # the default: where the server starts
    app = create_app(text_only(library, uri=uri, media_root=str(indexed)))
    with TestClient(app) as test_client:
        data = b64(indexed / "photos" / "p1.png")
        hit = test_client.post("/collections/relative/search", json={"file": data}).json()["hits"][0]
        assert hit["id"] == key and hit["source"] == "photos/p1.png" and hit["media_url"]
        media = test_client.get(hit["media_url"])
        assert media.status_code == 200
        assert media.content == (indexed / "photos" / "p1.png").read_bytes()
        assert test_client.get(hit["poster_url"]).status_code == 200


def test_a_symlink_recorded_as_a_source_is_never_followed(library: Library, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:the secret the link points at")
    recorded = tmp_path / "innocent.png"
    photo(5).save(recorded)
    uri = str(tmp_path / "links.db")
    [key] = store_photos(library, uri, "links", [recorded])
    recorded.unlink()
    recorded.symlink_to(secret)  # swapped for a link after indexing
    with TestClient(create_app(text_only(library, uri=uri))) as test_client:
        for route in ("media", "poster"):
            refused = test_client.get(f"/collections/links/{route}/{key}")
            assert refused.status_code == 404 and b"secret" not in refused.content, refused.text
        hits = test_client.post("/collections/links/search", json={"vector": [0.1] * 16}).json()["hits"]
        assert hits[0]["id"] == key and hits[0]["media_url"] is None and hits[0]["poster_url"] is None


def test_search_by_id_never_returns_the_item_whatever_the_filter(client: TestClient) -> None:
    search = lambda body: client.post("/collections/photos/search", json=body)  # noqa: E731
    key = search({"text": "a red bicycle", "limit": 1}).json()["hits"][0]["id"]
    for hostile in ("1==1) or (1==1", 'id == "' + key + '"', "1==1"):
        response = search({"id": key, "filter": hostile, "limit": 10})
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            assert key not in {hit["id"] for hit in response.json()["hits"]}, hostile
        else:
            assert "filter" in response.json()["error"]["message"]
    some = search({"id": key, "limit": 2}).json()["hits"]
    assert len(some) == 2 and key not in {hit["id"] for hit in some}


def test_bad_query_vectors_are_refused_naming_why(client: TestClient) -> None:
    def search(vector: str) -> httpx.Response:
        body = '{"vector": ' + vector + "}"
        headers = {"content-type": "application/json"}
        return client.post("/collections/photos/search", content=body, headers=headers)

    with_nan = "[" + ", ".join(["0.1"] * 15 + ["NaN"]) + "]"
    assert "vector[15] is nan" in error_of(search(with_nan), 400)["message"]
    assert "finite" in error_of(search("[Infinity" + ", 0.1" * 15 + "]"), 400)["message"]
    assert "within" in error_of(search("[1e30" + ", 0.1" * 15 + "]"), 400)["message"]
    assert "all zeros" in error_of(search("[" + ", ".join(["0"] * 16) + "]"), 400)["message"]
    for tiny in ("1e-320", "1e-30"):  # zero in float32, or squares that underflow to zero
        assert "all zeros" in error_of(search("[" + ", ".join([tiny] * 16) + "]"), 400)["message"]
    assert search("[" + ", ".join(["0.1"] * 16) + "]").status_code == 200


def test_collections_are_listed_through_the_one_catalogue_client(client: TestClient) -> None:
    """GET /collections reads under the catalogue's lock, not through a client of its own."""
    pool = client.app.state.pool  # type: ignore[attr-defined]
    answered: list[int] = []
    with pool._catalog_lock:
        lister = threading.Thread(target=lambda: answered.append(client.get("/collections").status_code))
        lister.start()
        time.sleep(0.5)
        assert answered == []  # waiting for the lock the catalogue holds
    lister.join(30)
    assert answered == [200]


def test_a_server_failure_in_milvus_is_not_blamed_on_the_client(library: Library, tmp_path: Path) -> None:
    """A Milvus refusal with no filter involved is the server's (5xx), not a 400."""
    from multiembed.errors import BackendError
    from multiembed.serve.errors import status_of

    assert status_of(BackendError("Milvus: Collection 'x' is in state 'released'; call load()")) == 500
    assert status_of(BackendError("cannot connect to Milvus at http://x:19530 (refused)")) == 503


def test_audio_uploads_longer_than_the_limit_are_refused_by_their_header(tmp_path: Path) -> None:
    """A few bytes can claim hours (a WAV at 1 Hz): every 30 s of it is a forward pass all clients wait on."""
    import numpy as np

    from tests.media_files import write_audio

    library = build_library(tmp_path, audio=True)
    long = write_audio(tmp_path / "long.wav", np.zeros(40, np.float32), 1)  # 40 s in 80 bytes of samples
    short = b64(library.sounds[0])  # 1 s
    models = [f"text=text:{library.text_model}", f"sound=audio:{library.whisper_model}"]
    app = create_app(settings(library, models=models, max_audio_seconds=20))
    with TestClient(app) as test_client:
        wait_healthy(test_client)
        body = {"model": "sound", "modality": "audio", "input": [short, b64(long)]}
        refused = error_of(test_client.post("/v1/embeddings", json=body), 400)
        assert refused["item"] == 1 and "40 s of audio: at most 20 s per clip" in refused["message"]
        search = test_client.post("/collections/sounds/search", json={"file": b64(long)})
        assert "40 s of audio" in error_of(search, 400)["message"]
        added = test_client.post("/collections/sounds/items", json={"items": [short, b64(long)]}).json()
        assert added["failed"] == [{"item": 1, "reason": "40 s of audio: at most 20 s per clip here "
                                    "(serve --max-audio-seconds)"}]  # fmt: skip
        assert added["skipped"] == 1  # the short one was stored already
        body["input"] = [short]
        assert test_client.post("/v1/embeddings", json=body).status_code == 200
