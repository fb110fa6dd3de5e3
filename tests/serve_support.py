"""Shared parts of the serve tests: a small library of collections built from tiny models, and a
real uvicorn server on 127.0.0.1 in a background thread.

``build_library(root)`` makes, in ``root``, a tiny text model and a tiny CLIP, a few photo files
and a Milvus Lite database holding two collections: ``notes`` (texts) and ``photos`` (the photo
files, image-text); ``videos=True`` adds ``clips`` (two video files, video with the tiny CLIP) and
``audio=True`` adds ``sounds`` (a few short wav files, audio with a tiny Whisper). Collections with
no served model (``clips``, ``sounds``) are searched with the model they recorded.
``running_server(app)`` serves an app on a free port and yields its base URL.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import numpy as np

if TYPE_CHECKING:
    from multiembed.serve.settings import ServeSettings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

NOTES = [
    "a red bicycle leans against a brick wall",
    "the quick brown fox jumps over the lazy dog",
    "milvus is a vector database",
    "artificial intelligence was founded as an academic discipline in 1956",
    "search every sentence with an embedding model",
]


@dataclass(frozen=True)
class Library:
    """What ``build_library`` made: the database, the models and the files behind each collection."""

    root: Path
    uri: str
    text_model: Path
    clip_model: Path
    texts: list[str]
    photos: list[Path]
    videos: list[Path] = field(default_factory=list)
    #: collection name -> modality
    collections: dict[str, str] = field(default_factory=dict)
    #: the ``sounds`` collection's wav files and the tiny Whisper behind it (``audio=True``)
    sounds: list[Path] = field(default_factory=list)
    whisper_model: Path | None = None

    def model_specs(self) -> list[str]:
        """``--model`` specs serving the library's two tiny models as ``text`` and ``clip``."""
        return [f"text=text:{self.text_model}", f"clip=image-text:{self.clip_model}"]


def _store(uri: str, name: str, modality: str, model: Path, items: list[Any]) -> None:
    from multiembed.milvus import MilvusStore

    with MilvusStore(uri, name, modality=modality, model=str(model), device="cpu") as store:
        report = store.add(items, progress=False)
        assert not report.errors, report.errors


def _sounds(root: Path) -> list[Path]:
    """Four short, distinct mono wav files (tones, a sweep, noise) at 16 kHz."""
    from tests.media_files import chirp, tone, write_audio

    rate = 16000
    noise = np.random.default_rng(0).normal(0, 0.1, rate).astype(np.float32)
    clips = {
        "tone220": tone(1.0, rate, 220.0),
        "tone1760": tone(0.75, rate, 1760.0),
        "sweep": chirp(1.25, rate, 200.0, 4000.0),
        "noise": noise,
    }
    folder = root / "sounds"
    folder.mkdir(exist_ok=True)
    return [write_audio(folder / f"{name}.wav", samples, rate) for name, samples in clips.items()]


def build_library(root: Path, *, videos: bool = False, audio: bool = False) -> Library:
    """Tiny models, media files and a Milvus Lite database with ``notes`` and ``photos`` (+ ``clips``,
    + ``sounds``)."""
    from tests.image_files import photo
    from tests.tiny_models import tiny_clip_dir, tiny_sentence_transformer

    root.mkdir(parents=True, exist_ok=True)
    text_model = tiny_sentence_transformer(root / "models", "text")
    clip_model = tiny_clip_dir(root / "models")
    folder = root / "photos"
    folder.mkdir(exist_ok=True)
    photos = []
    for seed, suffix in enumerate([".png", ".jpg", ".png", ".jpg"]):
        path = folder / f"photo{seed}{suffix}"
        photo(seed + 1, (64 + 8 * seed, 48)).save(path)
        photos.append(path)
    uri = str(root / "library.db")
    _store(uri, "notes", "text", text_model, list(NOTES))
    _store(uri, "photos", "image-text", clip_model, list(photos))
    collections = {"notes": "text", "photos": "image-text"}
    clips: list[Path] = []
    if videos:
        from tests.media_files import write_video

        (root / "videos").mkdir(exist_ok=True)
        clips = [
            write_video(root / "videos" / f"clip{index}.mp4", frames=8 + 4 * index, pattern=True)
            for index in range(2)
        ]
        _store(uri, "clips", "video", clip_model, list(clips))
        collections["clips"] = "video"
    sounds: list[Path] = []
    whisper_model: Path | None = None
    if audio:
        from tests.tiny_models import tiny_whisper_dir

        whisper_model = tiny_whisper_dir(root / "models")
        sounds = _sounds(root)
        _store(uri, "sounds", "audio", whisper_model, list(sounds))
        collections["sounds"] = "audio"
    return Library(
        root, uri, text_model, clip_model, list(NOTES), photos, clips, collections, sounds, whisper_model
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(app: Any, timeout: float = 30.0, **config: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a background thread; yields its URL.

    The socket is bound before the thread starts, so the URL is reachable as soon as it is yielded
    (requests wait in the backlog until uvicorn has started); the server is stopped on exit.
    ``config`` goes to ``uvicorn.Config`` (e.g. ``log_level="info", access_log=True``).
    """
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "timeout_graceful_shutdown": 2, **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def wait_until_loaded(base_url: str, timeout: float = 60.0, headers: dict[str, str] | None = None) -> None:
    """Wait for /healthz to report every model loaded (models load in the background; until then
    it answers 503 with ``"status": "loading"``)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{base_url}/healthz", headers=headers, timeout=10)
        body = response.json()
        if response.status_code == 200 and all(state == "ok" for state in body["models"].values()):
            return
        if "dead" in body["models"].values() or time.monotonic() > deadline:
            raise RuntimeError(f"models did not load: {body}")
        time.sleep(0.05)


# ---- helpers shared by the serve test modules -------------------------------------------------------
def settings(library: Library, **overrides: Any) -> ServeSettings:
    """Settings serving the library's two tiny models over its database, on the CPU."""
    from multiembed.serve.settings import ServeSettings

    values: dict[str, Any] = {"uri": library.uri, "models": library.model_specs(), "device": "cpu"}
    return ServeSettings(**{**values, **overrides})


def text_only(library: Library, **overrides: Any) -> ServeSettings:
    return settings(library, models=[f"text=text:{library.text_model}"], **overrides)


def b64(data: bytes | Path) -> str:
    return base64.b64encode(data.read_bytes() if isinstance(data, Path) else data).decode("ascii")


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["message"]
    return error


def still_serving(client: Any) -> None:
    """A TestClient or httpx.Client on a server that still embeds and reports itself healthy."""
    response = client.post("/v1/embeddings", json={"model": "text", "input": "still here"})
    assert response.status_code == 200, response.text
    assert client.get("/healthz").status_code == 200


def wait_healthy(client: Any, timeout: float = 60.0) -> None:
    """Poll /healthz through ``client`` (a TestClient) until every model is loaded (200)."""
    deadline = time.monotonic() + timeout
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/healthz").text
        time.sleep(0.05)


def embed_one(url: str, text: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/embeddings", json={"model": "text", "input": text}, timeout=30)


def raw_request(url: str, request: bytes, hang_up_when: Callable[[], bool] | None = None) -> None:
    """Send ``request`` over a fresh connection and hang up without reading the answer.

    With ``hang_up_when``, the connection stays open until it returns true (or 10 s pass): a client
    that leaves after the server has started on its request, not one gone before it was read.
    """
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=5) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + 10
        while hang_up_when is not None and not hang_up_when() and time.monotonic() < deadline:
            time.sleep(0.01)


def vectors_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def assert_same(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    assert float(np.max(np.abs(got - expected))) <= 1e-5
