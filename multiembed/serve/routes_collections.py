"""``GET /collections``, ``POST /collections/{name}/search`` and ``POST /collections/{name}/items``.

Searching and adding go through ``MilvusStore`` (its filter, hybrid fusion and idempotent upsert),
on the worker thread of the collection's encoder whenever the model is needed. A text query to a
cross-modal collection (CLIP) is embedded by the batcher, with the text tower, and searched as a
vector: the store would take a text that names an existing file for query-by-example, and the
server never reads a file a client names.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Request

from multiembed.serve.errors import ApiError, parse_json
from multiembed.serve.inputs import (
    UPLOAD_PREFIX,
    decode_base64,
    is_multipart,
    kind_of,
    media_of,
    read_form,
    upload_source,
)
from multiembed.serve.routes_embeddings import body_schema, pool_of, validated
from multiembed.serve.schemas import (
    AddRequest,
    AddResponse,
    CollectionCard,
    CollectionList,
    SearchHit,
    SearchRequest,
    SearchResponse,
)
from multiembed.sources import Item

if TYPE_CHECKING:
    from multiembed.encoder import Encoder
    from multiembed.milvus.results import Hit
    from multiembed.serve.models import OpenCollection

router = APIRouter()
T = TypeVar("T")
_KEY = re.compile(r"^[0-9a-f]{64}$")
_SEARCH_FORM = {
    "file": {"type": "string", "format": "binary"},
    "text": {"type": "string"},
    "filter": {"type": "string"},
    "limit": {"type": "integer"},
    "hybrid": {"type": "boolean"},
}
_ADD_FORM = {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}}


def locked(lock: threading.Lock, function: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        with lock:
            return function()

    return run


def item_key(value: str) -> str:
    """A collection's primary key (a sha256), or a 404: nothing else can name an item."""
    if not _KEY.match(value):
        raise ApiError(404, f"no item {value!r}: item ids are the 64 hex digits of a sha256")
    return value


@router.get("/collections", response_model=CollectionList, summary="Collections and what they hold")
async def list_collections(request: Request) -> CollectionList:
    summaries = await to_thread.run_sync(pool_of(request).summaries)
    cards = []
    for summary in summaries:
        info = summary.info
        cards.append(
            CollectionCard(
                name=summary.name,
                modality=info.modality if info else None,
                model=info.model if info else None,
                count=summary.rows,
                dimension=info.dim if info else None,
                media=media_of(info.modality) if info else None,
                hybrid=info.hybrid if info else False,
                damage=summary.damage,
            )
        )
    return CollectionList(collections=cards)


async def _search_request(request: Request) -> tuple[SearchRequest, bytes | None]:
    if not is_multipart(request):
        parsed: SearchRequest = validated(SearchRequest, parse_json(await request.body()))
        return parsed, None
    form = await read_form(request, max_files=1)
    fields = {
        key: value for key, value in form.fields.items() if key in ("text", "filter", "limit", "hybrid")
    }
    parsed = validated(SearchRequest, fields)
    return parsed, (form.files[0][1] if form.files else None)


def hit_json(collection: str, kind: str, hit: Hit) -> dict[str, Any]:
    """A hit as the page shows it; media URLs only for files the collection recorded and that exist."""
    text = hit.fields.get("text")
    on_disk = not hit.source.startswith(UPLOAD_PREFIX) and Path(hit.source).is_file()
    base = f"/collections/{quote(collection, safe='')}"
    media = f"{base}/media/{hit.id}" if kind != "text" and on_disk else None
    poster = f"{base}/poster/{hit.id}" if kind in ("image", "video") and on_disk else None
    return SearchHit(
        id=hit.id,
        score=hit.score,
        score_kind=hit.score_kind,
        source=hit.source,
        kind=kind,
        text=text if isinstance(text, str) else None,
        media_url=media,
        poster_url=poster,
        fields=hit.fields,
    ).model_dump()


async def _by_vector(
    opened: OpenCollection, vector: Any, query: SearchRequest, filter: str | None
) -> list[Hit]:
    store = opened.store
    search = lambda: store.search(vector, query.limit, filter or None, hybrid=query.hybrid)  # noqa: E731
    return await to_thread.run_sync(locked(opened.lock, search))


async def _on_worker(opened: OpenCollection, value: Any, query: SearchRequest) -> list[Hit]:
    store = opened.store

    def search(encoder: Encoder) -> list[Hit]:
        with opened.lock:
            return store.search(value, query.limit, query.filter or None, hybrid=query.hybrid)

    return await opened.served.batcher.call(search)


async def _by_id(request: Request, opened: OpenCollection, query: SearchRequest) -> list[Hit]:
    """Items like one already stored: its own vector, the item itself left out."""
    key = item_key(str(query.id))
    field = opened.store.info.fields[opened.store.stored_outputs[0].name]
    pool = pool_of(request)
    rows = await to_thread.run_sync(lambda: pool.query(opened.name, [key], [field]))
    if not rows:
        raise ApiError(404, f"no item {key} in collection {opened.name!r}")
    vector = rows[0][field]
    vector = (
        {int(k): float(v) for k, v in vector.items()}
        if isinstance(vector, dict)
        else np.asarray(vector, "f4")
    )
    others = f'id != "{key}"' + (f" and ({query.filter})" if query.filter else "")
    return await _by_vector(opened, vector, query, others)


async def _by_text(opened: OpenCollection, query: SearchRequest) -> list[Hit]:
    encoder = await opened.served.batcher.ready()
    text = str(query.text)
    if encoder.documents_are_text:
        return await _on_worker(opened, text, query)
    if not encoder.accepts_text_queries:
        raise ApiError(
            400,
            f"collection {opened.name!r} holds {media_of(encoder.modality)} vectors from a model that takes "
            "no text queries; search it with a file (query by example)",
        )
    if query.hybrid:
        raise ApiError(400, f"collection {opened.name!r} has one vector field: nothing to fuse (hybrid)")
    encoded = await opened.served.batcher.encode([text], "query")
    return await _by_vector(opened, encoded.outputs[encoded.specs[0].name][0], query, query.filter)


@router.post(
    "/collections/{name}/search",
    response_model=SearchResponse,
    openapi_extra=body_schema(SearchRequest, _SEARCH_FORM),
    summary="Search a collection by text, an example file, a vector or a stored item",
)
async def search_collection(name: str, request: Request) -> dict[str, Any]:
    query, upload = await _search_request(request)
    given = [key for key in ("text", "vector", "id", "file") if getattr(query, key) is not None]
    given += ["file"] if upload is not None else []
    if len(given) != 1:
        raise ApiError(
            400, f"give exactly one of text, vector, id and file (got {', '.join(given) or 'none'})"
        )
    opened = await pool_of(request).collection(name)
    store = opened.store
    if query.hybrid and not store.info.hybrid and len(store.stored_outputs) < 2:
        raise ApiError(
            400,
            f"collection {name!r} has one vector field, nothing to fuse: hybrid search needs a collection "
            "built with BM25 (`multiembed index --hybrid`) or a model with several outputs",
        )
    if query.text is not None:
        hits = await _by_text(opened, query)
    elif query.vector is not None:
        hits = await _by_vector(opened, np.asarray(query.vector, dtype=np.float32), query, query.filter)
    elif query.id is not None:
        hits = await _by_id(request, opened, query)
    else:
        data = upload if upload is not None else decode_base64(str(query.file), 0)
        hits = await _on_worker(opened, data, query)
    kind = kind_of(store.info.modality)
    # hit_json looks at each source on disk: off the event loop
    return {"hits": await to_thread.run_sync(lambda: [hit_json(name, kind, hit) for hit in hits])}


def _add(opened: OpenCollection, items: list[Item], positions: list[int]) -> dict[str, Any]:
    """Store the items (on the worker thread); failures come back by their index in the request."""
    added: list[str] = []
    skipped = 0
    failed = []
    with opened.lock:
        for part in opened.store.iter_add(items, progress=False):
            added += part.ids
            skipped += len(part.skipped)
            failed += [{"item": positions[error.index], "reason": error.reason} for error in part.errors]
    return {"added": len(added), "skipped": skipped, "ids": added, "failed": failed}


@router.post(
    "/collections/{name}/items",
    response_model=AddResponse,
    openapi_extra=body_schema(AddRequest, _ADD_FORM),
    summary="Embed and add items (texts or files); ones already stored are skipped",
)
async def add_items(name: str, request: Request) -> dict[str, Any]:
    pool = pool_of(request)
    limit = pool.settings.max_inputs
    failed: list[dict[str, Any]] = []
    if is_multipart(request):
        form = await read_form(request, limit)
        labelled: list[tuple[str, Any]] = list(form.files)
    else:
        parsed: AddRequest = validated(AddRequest, parse_json(await request.body()))
        if parsed.ids is not None and len(parsed.ids) != len(parsed.items):
            raise ApiError(400, f"{len(parsed.ids)} ids for {len(parsed.items)} items: give one per item")
        labelled = list(
            zip(parsed.ids or [f"#{i}" for i in range(len(parsed.items))], parsed.items, strict=True)
        )
    if not labelled:
        raise ApiError(400, "no items to add")
    if len(labelled) > limit:
        raise ApiError(400, f"{len(labelled)} items: at most {limit} per request")
    opened = await pool.collection(name)
    text = kind_of(opened.store.info.modality) == "text"
    items: list[Item] = []
    positions: list[int] = []
    for index, (label, value) in enumerate(labelled):
        if isinstance(value, str) and not text:
            try:
                value = decode_base64(value, index)
            except ApiError as error:
                failed.append({"item": index, "reason": error.message})
                continue
        items.append(Item(upload_source(label), value))
        positions.append(index)
    report = await opened.served.batcher.call(lambda encoder: _add(opened, items, positions))
    report["failed"] = sorted(failed + report["failed"], key=lambda entry: entry["item"])
    return report
