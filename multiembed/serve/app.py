"""``create_app``: the FastAPI application of ``multiembed serve``, wired from its settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from multiembed.serve import routes_collections, routes_embeddings, routes_media
from multiembed.serve.auth import BearerAuth, redact_access_log
from multiembed.serve.docs import install_docs
from multiembed.serve.errors import SizeLimit, install_error_handlers
from multiembed.serve.models import ModelPool
from multiembed.serve.settings import ServeSettings

DESCRIPTION = """Embeddings for text, images, audio and video, and search over multiembed's Milvus
collections. `POST /v1/embeddings` is OpenAI's embeddings API (the `openai` client works unchanged),
extended with `modality` and file uploads. Errors are `{"error": {"message", "type", "item"}}`."""


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The application; the models start loading when it starts (lifespan), each on its own thread.

    A bad setting or model spec raises here, before anything is bound or loaded.
    """
    settings = settings or ServeSettings()
    settings.check()
    pool = ModelPool(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.start()
        try:
            yield
        finally:
            await to_thread.run_sync(pool.close)

    from multiembed import __version__

    app = FastAPI(
        title="multiembed",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from local files by install_docs: FastAPI's default page needs a CDN
        redoc_url=None,
    )
    app.state.pool = pool
    app.state.settings = settings
    install_error_handlers(app)
    install_docs(app)
    app.include_router(routes_embeddings.router)
    app.include_router(routes_collections.router)
    app.include_router(routes_media.router)
    if routes_media.STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=routes_media.STATIC), name="static")
    # Added last, run first: the key is checked before the size, so a stranger's body is never read.
    app.add_middleware(SizeLimit, limit=settings.max_request_bytes)
    if settings.api_key:
        app.add_middleware(BearerAuth, key=settings.api_key)
        redact_access_log()  # the page's first address carries ?key=
    return app
