"""Turning what a request carries into the values the encoders take, and the role to embed them in.

Texts stay strings; image, audio and video inputs arrive as base64 strings, ``data:`` URLs or
multipart file parts and become bytes, which the modalities' loaders decode (and refuse, per item,
with the reason). Nothing here touches the file system: an upload's name is only a label.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from multiembed.serve.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request

    from multiembed.encoder import Encoder, Role

#: what the items of a modality are; the rest embed text
_MEDIA = {"image": "image", "image-text": "image-text", "audio": "audio", "video": "video"}
#: what one item is, for a page deciding how to show it
_KIND = {"image-text": "image"}
#: every part of a multipart form that is not a file is a short field (model, modality, limit...)
MAX_FIELD_BYTES = 64 * 1024
_SPACE = re.compile(rb"\s+")
#: the name an uploaded item is recorded under starts with this, so it never reads as a local path
UPLOAD_PREFIX = "upload:"


def media_of(modality: str) -> str:
    """What a modality's documents are: image, audio, video, image-text (images, text queries) or text."""
    return _MEDIA.get(modality, "text")


def kind_of(modality: str) -> str:
    """What one stored item of a modality is: image, audio, video or text."""
    media = media_of(modality)
    return _KIND.get(media, media)


def upload_source(name: str) -> str:
    """The recorded source of an uploaded item: a label, never a path the server would open."""
    label = "".join(character for character in name if character.isprintable())[:200]
    return UPLOAD_PREFIX + (label or "item")


def decode_base64(text: str, index: int) -> bytes:
    """The bytes of a base64 string or ``data:`` URL; a 400 naming the item if it is neither."""
    data = text.strip()
    if data.startswith("data:"):
        header, comma, payload = data.partition(",")
        if not comma:
            raise ApiError(400, f"input[{index}]: a data: URL needs a comma before its data", index)
        if not header.endswith(";base64"):
            return unquote_to_bytes(payload)
        data = payload
    raw = _SPACE.sub(b"", data.encode("ascii", "replace"))
    if b"-" in raw or b"_" in raw:
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ApiError(400, f"input[{index}]: not valid base64 ({error})", index) from None


@dataclass(frozen=True)
class Plan:
    """How a request's inputs are read and embedded: as ``media``, in ``role``."""

    media: str
    role: Role


def plan_for(encoder: Encoder, name: str, requested: str | None, role: Role | None, files: bool) -> Plan:
    """Which tower embeds the inputs: a model's own items are documents, text for a cross-modal
    model is a query (its text tower). Text models take ``role`` (query applies their query prompt).

    Without ``modality``, files are the model's own kind; JSON strings are texts for a model that
    takes text (CLIP), else base64 of its kind.
    """
    documents = kind_of(encoder.modality)
    takes_text = documents == "text" or encoder.accepts_text_queries
    if requested in (None, ""):
        requested = documents if files or not takes_text else "text"
    if requested == documents:
        return Plan(documents, (role or "document") if documents == "text" else "document")
    if requested == "text" and takes_text:
        return Plan("text", "query")
    also = " (and text queries)" if takes_text and documents != "text" else ""
    raise ApiError(400, f"model {name!r} embeds {documents}{also}, not {requested!r}")


def audio_too_long(data: Any, limit: float | None) -> str | None:
    """Why an uploaded clip is refused before it is embedded: longer than ``limit`` seconds by its
    header. A few MB can say days (silence compresses, a WAV header can claim 1 Hz), and every 30 s
    of it is a forward pass on the worker that all clients share. What cannot be read is left to
    the audio loader, which names the problem."""
    if limit is None or not isinstance(data, (bytes, bytearray, memoryview)):
        return None
    from multiembed.audio import audio_seconds, open_audio

    try:
        with open_audio(bytes(data)) as (container, stream):
            seconds = audio_seconds(container, stream)
    except Exception:  # not audio, or damaged: the loader gives the item's reason
        return None
    if seconds is None or seconds <= limit:
        return None
    return f"{seconds:,.0f} s of audio: at most {limit:,.0f} s per clip here (serve --max-audio-seconds)"


async def too_long(values: list[Any], limit: float | None) -> list[str | None]:
    """:func:`audio_too_long` of each value, off the event loop: probing and copying megabytes of
    uploads would stall every other request."""
    if limit is None:
        return [None] * len(values)
    from anyio import to_thread

    return await to_thread.run_sync(lambda: [audio_too_long(value, limit) for value in values])


def values_for(inputs: list[str], media: str) -> list[Any]:
    """Texts as they are; for other media, each string's base64 / data: URL bytes."""
    if media == "text":
        return list(inputs)
    return [decode_base64(text, index) for index, text in enumerate(inputs)]


@dataclass(frozen=True)
class Form:
    """A multipart request: its short fields, and its file parts as (label, bytes)."""

    fields: dict[str, str]
    files: list[tuple[str, bytes]]


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_form(request: Request, max_files: int) -> Form:
    """Every ``file`` part (bounded by the request size limit) and the other fields, as strings."""
    form = await request.form(max_files=max_files, max_fields=64, max_part_size=MAX_FIELD_BYTES)
    try:
        fields: dict[str, str] = {}
        files: list[tuple[str, bytes]] = []
        for key, value in form.multi_items():
            if isinstance(value, str):
                if key == "file":
                    files.append((f"#{len(files)}", value.encode("utf-8")))
                else:
                    fields[key] = value
            elif key == "file":
                files.append((value.filename or f"#{len(files)}", await value.read()))
        return Form(fields, files)
    finally:
        await form.close()
