"""The search page of `multiembed serve`, end to end in a real headless Chromium.

Debian's `chromium` (installed by .ci/run) is driven by Playwright for Python through
`executable_path`; Playwright never downloads a browser. The page is served by a real uvicorn
server on 127.0.0.1 over the serve tests' library (tests/serve_support.py): photo files in a CLIP
image-text collection, texts, video files and wav files, all embedded with tiny random models. Expected
rankings are computed here, straight from the encoders. A screenshot of the results is kept as a
test artifact in tests/artifacts/ (or $MULTIEMBED_TEST_ARTIFACTS when set).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import multiembed
from multiembed.serve.app import create_app
from multiembed.serve.settings import ServeSettings
from tests.serve_support import Library, build_library, running_server, wait_until_loaded

pytestmark = pytest.mark.slow

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = "page-test-key"
QUERIES = ["a red bicycle", "a brick wall", "a dog in the snow", "the sea at night", "milvus"]
LIMIT = 12  # what the page asks for
TIMEOUT_MS = 30_000
RESULTS_SETTLED = '[data-testid="results"][data-state="done"], [data-testid="results"][data-state="error"]'
ALL_THUMBNAILS_LOADED = """() => {
    const images = [...document.querySelectorAll('[data-testid="hit-thumbnail"]')];
    return images.length > 0 && images.every(img => img.complete && img.naturalWidth > 0);
}"""


def artifact_dir() -> Path:
    folder = Path(os.environ.get("MULTIEMBED_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Debian chromium; skipped without it (failed under MULTIEMBED_REQUIRE_BROWSER=1)."""
    why = ""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        why = f"Playwright for Python is not installed ({error}): pip install -e '.[dev]'"
    if not why and not CHROMIUM.exists():
        why = f"{CHROMIUM} is missing: apt-get install chromium (Debian's package; .ci/run installs it)"
    if why:
        if os.environ.get("MULTIEMBED_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MULTIEMBED_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    return build_library(tmp_path_factory.mktemp("page-library"), videos=True, audio=True)


@dataclass(frozen=True)
class Embedded:
    """One collection's files, their ids and vectors, computed here straight from its encoder."""

    files: list[Path]
    ids: list[str]
    vectors: np.ndarray
    encoder: Any

    def ranking(self, vector: np.ndarray) -> list[str]:
        return [self.ids[i] for i in np.argsort(-(self.vectors @ vector))]

    def margin(self, item: str) -> float:
        """How far the file nearest to `item` (other than itself) leads the next one."""
        scores = np.sort(self.vectors @ self.vectors[self.ids.index(item)])
        return float(scores[-2] - scores[-3])


def embedded(modality: str, model: Path, files: list[Path]) -> Embedded:
    encoder = multiembed.load(modality, str(model), device="cpu", workers=0)
    result = encoder.encode(files)
    assert not result.errors and len(result.ids) == len(files)
    return Embedded(list(files), list(result.ids), result.vectors, encoder)


@pytest.fixture(scope="module")
def photos(library: Library) -> Embedded:
    return embedded("image-text", library.clip_model, list(library.photos))


@pytest.fixture(scope="module")
def sounds(library: Library) -> Embedded:
    assert library.whisper_model is not None
    return embedded("audio", library.whisper_model, list(library.sounds))


def serve(library: Library, api_key: str | None = None) -> Iterator[str]:
    settings = ServeSettings(uri=library.uri, models=library.model_specs(), device="cpu", api_key=api_key)
    with running_server(create_app(settings)) as url:
        wait_until_loaded(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else None)
        yield url


@pytest.fixture(scope="module")
def server(library: Library) -> Iterator[str]:
    yield from serve(library)


@pytest.fixture(scope="module")
def keyed_server(library: Library) -> Iterator[str]:
    yield from serve(library, API_KEY)


@dataclass
class Tab:
    """A page in its own browser context, with the script errors it raised and the requests it
    sent anywhere but the server (the page must use no external URL)."""

    page: Any
    script_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)

    def search(self, action: Callable[[], Any], collection: str) -> tuple[Any, list[str]]:
        """Run `action` (which makes the page search), wait for the results to show; returns the
        search response and the hits' ids in page order."""
        page = self.page
        with page.expect_response(lambda r: r.url.endswith(f"/collections/{collection}/search")) as info:
            action()
        page.wait_for_selector(RESULTS_SETTLED, state="attached")
        return info.value, self.hits("id")

    def upload(self, embedded: Embedded, index: int, collection: str) -> list[str]:
        """Search by example with one of ``embedded``'s files through the page's file picker: the
        page must send it as a multipart upload, and that item must come first among all of them."""
        page = self.page
        pick = lambda: page.set_input_files('[data-testid="file-input"]', embedded.files[index])  # noqa: E731
        response, ids = self.search(pick, collection)
        assert response.status == 200
        assert response.request.headers["content-type"].startswith("multipart/form-data")
        assert ids[0] == embedded.ids[index] and sorted(ids) == sorted(embedded.ids)
        return ids

    def hits(self, attribute: str) -> list[str]:
        """One data- attribute of every hit shown, in page order."""
        return self.page.locator('[data-testid="hit"]').evaluate_all(
            "(hits, name) => hits.map(h => h.dataset[name])", attribute
        )

    def close(self) -> None:
        assert self.script_errors == [] and self.outside_requests == []
        self.page.context.close()


def open_page(browser: Any, base_url: str, collection: str, query: str = "") -> Tab:
    """A fresh page on the server, `collection` picked."""
    page = browser.new_context(viewport={"width": 1000, "height": 720}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    tab = Tab(page)
    page.on("pageerror", lambda error: tab.script_errors.append(str(error)))
    page.on(
        "request",
        lambda r: None if r.url.startswith((base_url, "data:")) else tab.outside_requests.append(r.url),
    )
    response = page.goto(f"{base_url}/{query}")
    assert response is not None and response.status == 200
    page.wait_for_selector('[data-testid="collection"][data-ready="true"]', state="attached")
    page.select_option('[data-testid="collection"]', collection)
    return tab


def best_query(photos: Embedded) -> tuple[str, list[str]]:
    """The query whose best photo leads the runner-up by the widest margin, and its ranking."""
    queries = np.stack(photos.encoder.encode_queries(QUERIES))
    scores = queries @ photos.vectors.T
    ordered = np.sort(scores, axis=1)
    best = int(np.argmax(ordered[:, -1] - ordered[:, -2]))
    assert ordered[best, -1] - ordered[best, -2] > 1e-4, "the tiny CLIP ranks the photos too close"
    return QUERIES[best], photos.ranking(queries[best])


def test_text_query_shows_the_expected_photo_and_clicking_it_searches_by_example(
    chromium: Any, server: str, photos: Embedded
) -> None:
    query, ranking = best_query(photos)
    tab = open_page(chromium, server, "photos")
    page = tab.page
    page.fill('[data-testid="query"]', query)
    response, ids = tab.search(lambda: page.press('[data-testid="query"]', "Enter"), "photos")
    assert response.status == 200 and response.request.post_data_json == {"text": query, "limit": LIMIT}
    assert ids[0] == ranking[0] and sorted(ids) == sorted(photos.ids)
    first = page.locator('[data-testid="hit"]').first
    assert first.get_attribute("data-kind") == "image"
    assert first.get_attribute("data-source") == str(photos.files[photos.ids.index(ranking[0])])
    float(first.locator('[data-testid="hit-score"]').inner_text())
    thumbnail = first.locator('[data-testid="hit-thumbnail"]')
    assert thumbnail.get_attribute("alt")
    page.wait_for_function(ALL_THUMBNAILS_LOADED)
    assert thumbnail.evaluate("img => img.naturalWidth") > 0
    shot = artifact_dir() / "serve-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0

    # Click a photo that is not first, the one whose nearest other photo leads by the widest margin.
    clicked, neighbours = max(((i, photos.ranking(photos.vectors[photos.ids.index(i)])) for i in ids[1:]),
                              key=lambda pair: photos.margin(pair[0]))  # fmt: skip
    open_it = page.locator(f'[data-testid="hit"][data-id="{clicked}"] [data-testid="hit-open"]')
    response, after = tab.search(open_it.click, "photos")
    assert response.status == 200 and response.request.post_data_json == {"id": clicked, "limit": LIMIT}
    # Items like the clicked one, by its own stored vector; the server leaves the item itself out
    # ("more like this": it would lead with a score of 1).
    assert clicked not in after
    assert after[0] == neighbours[1] and sorted(after) == sorted(neighbours[1:])
    assert "items like" in page.locator('[data-testid="status"]').inner_text()
    assert page.locator('[data-testid="error"]').is_hidden()
    tab.close()


def test_uploaded_and_dropped_files_search_by_example(chromium: Any, server: str, photos: Embedded) -> None:
    tab = open_page(chromium, server, "photos")
    page = tab.page
    tab.upload(photos, 2, "photos")

    transfer = page.evaluate_handle(
        """([bytes, name]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "image/jpeg"}));
            return transfer;
        }""",
        [list(photos.files[1].read_bytes()), photos.files[1].name],
    )
    drop = lambda: page.dispatch_event('[data-testid="dropzone"]', "drop", {"dataTransfer": transfer})  # noqa: E731
    _, ids = tab.search(drop, "photos")
    assert ids[0] == photos.ids[1]
    tab.close()


def test_text_hits_show_snippets_and_video_hits_posters(chromium: Any, server: str, library: Library) -> None:
    tab = open_page(chromium, server, "notes")
    page = tab.page
    page.fill('[data-testid="query"]', library.texts[2])
    _, ids = tab.search(lambda: page.click('[data-testid="search-button"]'), "notes")
    first = page.locator('[data-testid="hit"]').first
    assert len(ids) == len(library.texts) and first.get_attribute("data-kind") == "text"
    assert first.locator('[data-testid="hit-open"]').inner_text() == library.texts[2]

    # Changing the collection searches it with the same query; video hits show posters and play.
    _, ids = tab.search(lambda: page.select_option('[data-testid="collection"]', "clips"), "clips")
    assert len(ids) == len(library.videos)
    assert set(tab.hits("kind")) == {"video"}
    page.wait_for_function(ALL_THUMBNAILS_LOADED)
    first = page.locator('[data-testid="hit"]').first
    first.locator('[data-testid="hit-play"]').click()
    video = first.locator("video")
    assert "/media/" in video.get_attribute("src")
    page.wait_for_function("v => v.readyState >= 1 && v.duration > 0", arg=video.element_handle())
    tab.close()


def test_audio_hits_play_and_search_by_example(chromium: Any, server: str, sounds: Embedded) -> None:
    tab = open_page(chromium, server, "sounds")
    page = tab.page
    ids = tab.upload(sounds, 1, "sounds")
    assert set(tab.hits("kind")) == {"audio"}
    first = page.locator('[data-testid="hit"]').first
    assert first.get_attribute("data-source") == str(sounds.files[1])
    players = page.locator('[data-testid="hit-audio"]')
    assert players.count() == len(sounds.ids)
    audio = first.locator("audio")
    assert audio.get_attribute("src") == f"{server}/collections/sounds/media/{sounds.ids[1]}"
    assert audio.get_attribute("controls") is not None
    page.wait_for_function("a => a.readyState >= 1 && a.duration > 0", arg=audio.element_handle())
    duration = audio.evaluate("a => a.duration")
    assert abs(duration - 0.75) < 0.05, duration  # tone1760.wav: 0.75 s

    # "More like this" on the hit whose nearest other sound leads by the widest margin.
    clicked, neighbours = max(((i, sounds.ranking(sounds.vectors[sounds.ids.index(i)])) for i in ids),
                              key=lambda pair: sounds.margin(pair[0]))  # fmt: skip
    assert sounds.margin(clicked) > 1e-4, "the tiny Whisper ranks the sounds too close"
    more = page.locator(f'[data-testid="hit"][data-id="{clicked}"] [data-testid="hit-open"]')
    assert more.inner_text() == "More like this"
    response, after = tab.search(more.click, "sounds")
    assert response.status == 200 and response.request.post_data_json == {"id": clicked, "limit": LIMIT}
    assert clicked not in after
    assert after[0] == neighbours[1] and sorted(after) == sorted(neighbours[1:])
    assert set(tab.hits("kind")) == {"audio"}
    assert "items like" in page.locator('[data-testid="status"]').inner_text()
    assert page.locator('[data-testid="error"]').is_hidden()
    tab.close()


def test_failed_requests_show_the_servers_message(chromium: Any, server: str) -> None:
    tab = open_page(chromium, server, "photos")
    page = tab.page
    broken = {"name": "broken.png", "mimeType": "image/png", "buffer": b"this is not a picture"}
    response, ids = tab.search(lambda: page.set_input_files('[data-testid="file-input"]', broken), "photos")
    assert response.status == 400 and ids == []
    message = response.json()["error"]["message"]
    error = page.locator('[data-testid="error"]')
    assert error.is_visible() and message in error.inner_text() and "400" in error.inner_text()
    page.fill('[data-testid="query"]', "   ")
    page.press('[data-testid="query"]', "Enter")
    assert "Type a query" in error.inner_text()
    tab.close()


def test_media_are_served_only_from_recorded_sources(server: str, photos: Embedded) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        media = client.get(f"/collections/photos/media/{photos.ids[0]}")
        assert media.status_code == 200 and media.content == photos.files[0].read_bytes()
        assert media.headers["content-type"].startswith("image/")
        for item in ["0" * 64, str(photos.files[0]), "..%2F..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"]:
            refused = client.get(f"/collections/photos/media/{item}")
            assert refused.status_code == 404 and b"root:" not in refused.content, (item, refused.text)
        assert client.get(f"/collections/notes/media/{photos.ids[0]}").status_code == 404


def test_the_page_takes_the_key_from_its_address_once(
    chromium: Any, keyed_server: str, photos: Embedded
) -> None:
    """With an API key the page is opened once with ?key=: the server sets an HttpOnly cookie, the
    page drops the key from its address, and its API calls and thumbnails work by the cookie alone
    (no URL, no script-readable storage holds the key)."""
    tab = open_page(chromium, keyed_server, "photos", f"?key={API_KEY}&collection=photos")
    page = tab.page
    assert "key=" not in page.url and page.url.endswith("/?collection=photos")
    assert page.evaluate("document.cookie") == ""  # HttpOnly: out of the page's scripts' reach
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    assert cookies["multiembed_key"]["httpOnly"] and cookies["multiembed_key"]["sameSite"] == "Strict"
    page.fill('[data-testid="query"]', QUERIES[0])
    response, ids = tab.search(lambda: page.click('[data-testid="search-button"]'), "photos")
    assert response.status == 200 and "authorization" not in response.request.headers
    assert sorted(ids) == sorted(photos.ids)
    page.wait_for_function(ALL_THUMBNAILS_LOADED)
    sources = page.locator('[data-testid="hit-thumbnail"]').evaluate_all("nodes => nodes.map(n => n.src)")
    assert sources and not any("key=" in source for source in sources)
    page.reload()  # the address no longer has the key; the cookie still opens the page
    page.wait_for_selector('[data-testid="collection"][data-ready="true"]', state="attached")
    assert "key=" not in page.url
    tab.close()
    with httpx.Client(base_url=keyed_server, timeout=30) as client:
        assert client.get("/").status_code == client.get("/collections").status_code == 401


def test_the_api_docs_render_offline(chromium: Any, server: str) -> None:
    """/docs is Swagger UI from local files: it renders every route with no request leaving the server."""
    page = chromium.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server) else outside.append(r.url))
    response = page.goto(f"{server}/docs")
    assert response is not None and response.status == 200
    page.wait_for_selector(".opblock-summary-path", state="attached")
    paths = page.locator(".opblock-summary-path").evaluate_all("nodes => nodes.map(n => n.dataset.path)")
    assert {"/v1/embeddings", "/v1/models", "/collections/{name}/search", "/healthz"} <= set(paths)
    assert outside == []
    page.context.close()
