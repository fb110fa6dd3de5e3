"""Shared parts of the serve tests: a small library of collections built from tiny models, and a
real uvicorn server on 127.0.0.1 in a background thread.

``build_library(root)`` makes, in ``root``, a tiny text model and a tiny CLIP, a few photo files
and a Milvus Lite database holding two collections: ``notes`` (texts) and ``photos`` (the photo
files, image-text); ``videos=True`` adds ``clips`` (two video files, video with the tiny CLIP).
``running_server(app)`` serves an app on a free port and yields its base URL.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    def model_specs(self) -> list[str]:
        """``--model`` specs serving the library's two tiny models as ``text`` and ``clip``."""
        return [f"text=text:{self.text_model}", f"clip=image-text:{self.clip_model}"]


def _store(uri: str, name: str, modality: str, model: Path, items: list[Any]) -> None:
    from multiembed.milvus import MilvusStore

    with MilvusStore(uri, name, modality=modality, model=str(model), device="cpu") as store:
        report = store.add(items, progress=False)
        assert not report.errors, report.errors


def build_library(root: Path, *, videos: bool = False) -> Library:
    """Tiny models, media files and a Milvus Lite database with ``notes`` and ``photos`` (+ ``clips``)."""
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
    return Library(root, uri, text_model, clip_model, list(NOTES), photos, clips, collections)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(app: Any, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a background thread; yields its URL.

    The socket is bound before the thread starts, so the URL is reachable as soon as it is yielded
    (requests wait in the backlog until uvicorn has started); the server is stopped on exit.
    """
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
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
    """Wait for /healthz to report every model loaded (models load in the background)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{base_url}/healthz", headers=headers, timeout=10).json()
        if all(state == "ok" for state in body["models"].values()):
            return
        if "dead" in body["models"].values() or time.monotonic() > deadline:
            raise RuntimeError(f"models did not load: {body}")
        time.sleep(0.05)
