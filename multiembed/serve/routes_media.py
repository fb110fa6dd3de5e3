"""The files behind search hits (``media``, ``poster``) and the search page itself.

A file is served only when the collection recorded it as the source of that very item: the item's
``source`` is read from Milvus by its id, and must be a regular file at exactly that path. The
request supplies an id, never a path, so no client-given path is ever joined or opened.
"""

from __future__ import annotations

import io
import mimetypes
import os
import stat
from pathlib import Path

from anyio import to_thread
from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from multiembed.errors import InputError
from multiembed.serve.errors import ApiError
from multiembed.serve.inputs import UPLOAD_PREFIX, kind_of
from multiembed.serve.routes_collections import item_key
from multiembed.serve.routes_embeddings import pool_of

router = APIRouter()
STATIC = Path(__file__).resolve().parent / "static"
#: the longest side of a poster, in pixels
POSTER_SIDE = 320


def _recorded_file(request: Request, name: str, item: str) -> tuple[Path, str]:
    """The regular file the collection recorded for ``item``, and the collection's item kind."""
    pool = pool_of(request)
    info = pool.recorded(name)
    key = item_key(item)
    rows = pool.query(name, [key], ["source"])
    if not rows:
        raise ApiError(404, f"no item {key} in collection {name!r}")
    source = str(rows[0].get("source") or "")
    missing = ApiError(404, f"item {key} of collection {name!r} has no file here (its source: {source!r})")
    if not source or source.startswith(UPLOAD_PREFIX):
        raise missing
    path = Path(source)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise missing
    except OSError:
        raise missing from None
    return path, kind_of(info.modality)


@router.get("/collections/{name}/media/{item}", summary="The file an item was made from, as recorded")
async def media(name: str, item: str, request: Request) -> FileResponse:
    path, _ = await to_thread.run_sync(_recorded_file, request, name, item)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=content_type)


def _poster(path: Path, kind: str) -> bytes:
    """A JPEG thumbnail: the image itself, or a frame of the video."""
    from PIL import Image

    from multiembed.images import ImageLimits, load_image

    if kind == "image":
        image, _ = load_image(path, ImageLimits())
    elif kind == "video":
        from multiembed.video import read_video

        frames, _ = read_video(path, 1)
        image = Image.fromarray(frames[0])
    else:
        raise ApiError(404, f"{kind} items have no poster")
    image.thumbnail((POSTER_SIDE, POSTER_SIDE))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@router.get("/collections/{name}/poster/{item}", summary="A JPEG thumbnail of an image or video item")
async def poster(name: str, item: str, request: Request) -> Response:
    path, kind = await to_thread.run_sync(_recorded_file, request, name, item)
    try:
        data = await to_thread.run_sync(_poster, path, kind)
    except InputError as error:
        raise ApiError(404, f"no poster for item {item}: {error}") from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/", include_in_schema=False)
async def page() -> Response:
    index = STATIC / "index.html"
    if not index.is_file():
        raise ApiError(404, "the search page is not installed (multiembed/serve/static/index.html)")
    return FileResponse(index, media_type="text/html")
