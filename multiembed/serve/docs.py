"""``/docs``: Swagger UI served from the ``swagger-ui-bundle-v2`` package instead of a CDN.

FastAPI's default docs page loads Swagger UI from jsDelivr, which a server on a closed network (and
every machine this project is tested on) cannot reach: the page stays blank. The bundle ships the
same files (Swagger UI 5, which reads FastAPI's OpenAPI 3.1), so they are served from here. Without
the package, ``/docs`` still answers, with a link to the schema itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def _bundle() -> Path | None:
    """The folder of Swagger UI's files, or None when swagger-ui-bundle-v2 is not installed."""
    if importlib.util.find_spec("swagger_ui_bundle") is None:
        return None
    import swagger_ui_bundle

    folder = Path(swagger_ui_bundle.swagger_ui_path)
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def install_docs(app: FastAPI) -> None:
    """Adds ``/docs`` (the app must be made with ``docs_url=None``)."""
    folder = _bundle()
    if folder is not None:
        app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        # The page fetches the schema with a plain GET, which can carry the key only in the query.
        key = request.query_params.get("key")
        schema = "/openapi.json" + (f"?key={quote(key, safe='')}" if key else "")
        if folder is None:
            return HTMLResponse(
                "<!doctype html><title>multiembed API</title><p>The OpenAPI schema is at "
                f'<a href="{schema}">/openapi.json</a>. For the interactive page, '
                "<code>pip install swagger-ui-bundle-v2</code> (part of <code>multiembed[serve]</code>).</p>"
            )
        return get_swagger_ui_html(
            openapi_url=schema,
            title="multiembed API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
