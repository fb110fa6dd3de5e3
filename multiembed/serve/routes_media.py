"""The files behind search hits (``media``, ``poster``) and the search page itself.

A file is served only when the collection recorded it as the source of that very item: the item's
``source`` is read from Milvus by its id, and must be a regular file at exactly that path (a
relative one under the media root). The request supplies an id, never a path, so no client-given
path is ever joined or opened. The file is opened once, refusing a symlink as its last component
(``O_NOFOLLOW``), checked on that open descriptor and streamed from it: nothing swapped in at the
path between the check and the read is ever served.
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from anyio import to_thread
from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response, StreamingResponse

from multiembed.errors import InputError
from multiembed.serve.errors import ApiError
from multiembed.serve.inputs import UPLOAD_PREFIX, kind_of
from multiembed.serve.routes_collections import item_key
from multiembed.serve.routes_embeddings import pool_of

router = APIRouter()
STATIC = Path(__file__).resolve().parent / "static"
#: the longest side of a poster, in pixels
POSTER_SIDE = 320
CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: O_NOFOLLOW refuses a symlink; O_NONBLOCK keeps a FIFO planted at the path from blocking the open
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


@dataclass
class OpenFile:
    """A recorded file, open: its descriptor, name (for its type), size and the item's kind."""

    fd: int
    name: str
    size: int
    kind: str
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


def _recorded_file(request: Request, name: str, item: str) -> OpenFile:
    """The regular file the collection recorded for ``item``, opened (the caller closes it)."""
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
    path = pool.media_path(source)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        raise missing from None  # gone, unreadable, or a symlink (ELOOP)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise missing
    except BaseException:
        os.close(fd)
        raise
    return OpenFile(fd, path.name, status.st_size, kind_of(info.modality))


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one ``Range: bytes=a-b`` asked for as (first, last); None for the whole file.

    Several ranges, or a header that is not understood, get the whole file (RFC 9110 allows it);
    a range that starts past the end is refused with 416.
    """
    match = _RANGE.match(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first_text, last_text = match.groups()
    if first_text == "":  # the last N bytes
        first, last = max(0, size - int(last_text)), size - 1
    else:
        first = int(first_text)
        last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or first > last:
        raise ApiError(416, f"range {header!r} is outside the file's {size} bytes")
    return first, last


async def _chunks(opened: OpenFile, first: int, last: int) -> AsyncIterator[bytes]:
    position = first
    try:
        while position <= last:
            data = await to_thread.run_sync(os.pread, opened.fd, min(CHUNK, last + 1 - position), position)
            if not data:
                break
            position += len(data)
            yield data
    finally:
        opened.close()


@router.get("/collections/{name}/media/{item}", summary="The file an item was made from, as recorded")
async def media(name: str, item: str, request: Request) -> Response:
    opened = await to_thread.run_sync(_recorded_file, request, name, item)
    try:
        wanted = _byte_range(request.headers.get("range"), opened.size)
    except ApiError:
        opened.close()
        raise
    first, last = wanted if wanted is not None else (0, opened.size - 1)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(max(0, last + 1 - first))}
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{opened.size}"
    content_type = mimetypes.guess_type(opened.name)[0] or "application/octet-stream"
    return StreamingResponse(
        _chunks(opened, first, last),
        status_code=206 if wanted is not None else 200,
        media_type=content_type,
        headers=headers,
        background=BackgroundTask(opened.close),  # also closed if the body is never streamed
    )


def _poster(opened: OpenFile) -> bytes:
    """A JPEG thumbnail: the image itself, or a frame of the video (read from the open file)."""
    from PIL import Image

    from multiembed.images import ImageLimits, load_image

    limits = ImageLimits()
    if opened.kind == "image":
        if limits.max_bytes is not None and opened.size > limits.max_bytes:
            raise InputError(f"the image is over {limits.max_bytes:,} bytes")
        image, _ = load_image(os.pread(opened.fd, opened.size, 0), limits)
    elif opened.kind == "video":
        from multiembed.video import read_video

        by_fd = Path(f"/proc/self/fd/{opened.fd}")  # the open file itself, not the path again
        frames, _ = read_video(by_fd if by_fd.exists() else os.pread(opened.fd, opened.size, 0), 1)
        image = Image.fromarray(frames[0])
    else:
        raise ApiError(404, f"{opened.kind} items have no poster")
    image.thumbnail((POSTER_SIDE, POSTER_SIDE))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@router.get("/collections/{name}/poster/{item}", summary="A JPEG thumbnail of an image or video item")
async def poster(name: str, item: str, request: Request) -> Response:
    opened = await to_thread.run_sync(_recorded_file, request, name, item)
    try:
        data = await to_thread.run_sync(_poster, opened)
    except InputError as error:
        raise ApiError(404, f"no poster for item {item}: {error}") from None
    finally:
        opened.close()
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/", include_in_schema=False)
async def page() -> Response:
    index = STATIC / "index.html"
    if not index.is_file():
        raise ApiError(404, "the search page is not installed (multiembed/serve/static/index.html)")
    return FileResponse(index, media_type="text/html")
