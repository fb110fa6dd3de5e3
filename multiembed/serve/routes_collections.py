"""``GET /collections``, ``POST /collections/{name}/search`` and ``POST /collections/{name}/items``.

Searching and adding go through ``MilvusStore`` (its filter, hybrid fusion and idempotent upsert),
on the worker thread of the collection's encoder whenever the model is needed. A text query to a
cross-modal collection (CLIP) is embedded by the batcher, with the text tower, and searched as a
vector: the store would take a text that names an existing file for query-by-example, and the
server never reads a file a client names.
"""

from __future__ import annotations

import math
import os
import re
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Request

from multiembed.errors import BackendError, MultiembedError
from multiembed.serve.errors import ApiError, parse_json
from multiembed.serve.inputs import (
    UPLOAD_PREFIX,
    decode_base64,
    is_multipart,
    kind_of,
    media_of,
    read_form,
    too_long,
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
    from multiembed.milvus.store import MilvusStore
    from multiembed.serve.models import OpenCollection

router = APIRouter()
T = TypeVar("T")
_KEY = re.compile(r"[0-9a-f]{64}")  # fullmatch: "$" would let a trailing newline through
_SEARCH_FORM = {
    "file": {"type": "string", "format": "binary"},
    "text": {"type": "string"},
    "filter": {"type": "string"},
    "limit": {"type": "integer"},
    "hybrid": {"type": "boolean"},
}
_ADD_FORM = {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}}
#: the largest vector component searched with: beyond it float32 sums of squares overflow to inf
MAX_COMPONENT = 1e15


def locked(lock: threading.Lock, function: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        with lock:
            return function()

    return run


def item_key(value: str) -> str:
    """A collection's primary key (a sha256), or a 404: nothing else can name an item."""
    if not _KEY.fullmatch(value):
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


def is_served_file(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (a symlink is not: it could point anywhere)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def hit_json(collection: str, kind: str, hit: Hit, root: str) -> dict[str, Any]:
    """A hit as the page shows it; media URLs only for files the collection recorded and that exist.

    A relative source is looked for under ``root`` (the media root), never the server's cwd.
    """
    text = hit.fields.get("text")
    on_disk = not hit.source.startswith(UPLOAD_PREFIX) and is_served_file(Path(root, hit.source))
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


def search_store(store: MilvusStore, value: Any, limit: int, filter: str | None, hybrid: bool) -> list[Hit]:
    """``store.search``, telling a refused filter (the caller's fault: 400) from a Milvus failure.

    Milvus' errors do not say whose fault they are, so when a search with a filter fails, the same
    search runs once without it: if that works, the filter was the problem.
    """
    try:
        return store.search(value, limit, filter or None, hybrid=hybrid)
    except BackendError as error:
        if not filter or not str(error).startswith("Milvus:"):
            raise
        try:
            store.search(value, 1, None, hybrid=hybrid)
        except MultiembedError:
            raise error from None
        raise ApiError(400, f"the filter {filter!r} was refused: {error}") from None


def checked_vector(values: list[float], store: MilvusStore) -> np.ndarray:
    """The query vector as float32, or a 400 naming why it cannot be searched with.

    NaN, infinity or huge components would come back as a 200 with no hits (and warnings).
    """
    vector = np.asarray(values, dtype=np.float64)
    bad = [index for index, value in enumerate(values) if not math.isfinite(value)]
    if bad:
        raise ApiError(400, f"vector[{bad[0]}] is {values[bad[0]]}: every component must be a finite number")
    if vector.size and float(np.max(np.abs(vector))) > MAX_COMPONENT:
        index = int(np.argmax(np.abs(vector)))
        raise ApiError(
            400, f"vector[{index}] is {values[index]:g}: components must be within ±{MAX_COMPONENT:g}"
        )
    metric = store.stored_outputs[0].metric.upper()
    searched = vector.astype(np.float32)
    # in float32, as Milvus computes: 1e-320 becomes 0, and the squares of 1e-30 underflow to 0
    if searched.size and metric == "COSINE" and not np.dot(searched, searched) > 0:
        raise ApiError(400, "the vector is all zeros (in float32): a cosine search needs a direction")
    return searched


async def _by_vector(
    opened: OpenCollection, vector: Any, query: SearchRequest, filter: str | None, limit: int | None = None
) -> list[Hit]:
    store = opened.store
    search = lambda: search_store(store, vector, limit or query.limit, filter, query.hybrid)  # noqa: E731
    return await to_thread.run_sync(locked(opened.lock, search))


async def _on_worker(opened: OpenCollection, value: Any, query: SearchRequest) -> list[Hit]:
    store = opened.store

    def search(encoder: Encoder) -> list[Hit]:
        with opened.lock:
            return search_store(store, value, query.limit, query.filter, query.hybrid)

    return await opened.served.batcher.call(search)


async def _by_id(request: Request, opened: OpenCollection, query: SearchRequest) -> list[Hit]:
    """Items like one already stored: its own vector, the item itself left out.

    The item is dropped from one extra hit rather than excluded by a filter: joined to the
    caller's filter, an exclusion could be undone by it (``1==1) or (1==1``).
    """
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
    hits = await _by_vector(opened, vector, query, query.filter, query.limit + 1)
    return [hit for hit in hits if hit.id != key][: query.limit]


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
        hits = await _by_vector(opened, checked_vector(query.vector, store), query, query.filter)
    elif query.id is not None:
        hits = await _by_id(request, opened, query)
    else:
        data = upload if upload is not None else decode_base64(str(query.file), 0)
        if kind_of(store.info.modality) == "audio":
            [reason] = await too_long([data], pool_of(request).settings.max_audio_seconds)
            if reason is not None:
                raise ApiError(400, f"the file: {reason}")
        hits = await _on_worker(opened, data, query)
    kind = kind_of(store.info.modality)
    root = pool_of(request).settings.media_root
    # hit_json looks at each source on disk: off the event loop
    return {"hits": await to_thread.run_sync(lambda: [hit_json(name, kind, hit, root) for hit in hits])}


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
    kind = kind_of(opened.store.info.modality)
    decoded: list[tuple[int, str, Any]] = []
    for index, (label, value) in enumerate(labelled):
        if isinstance(value, str) and kind != "text":
            try:
                value = decode_base64(value, index)
            except ApiError as error:
                failed.append({"item": index, "reason": error.message})
                continue
        decoded.append((index, label, value))
    longest = pool.settings.max_audio_seconds if kind == "audio" else None
    refusals = await too_long([value for _, _, value in decoded], longest)
    items: list[Item] = []
    positions: list[int] = []
    for (index, label, value), reason in zip(decoded, refusals, strict=True):
        if reason is not None:
            failed.append({"item": index, "reason": reason})
            continue
        items.append(Item(upload_source(label), value))
        positions.append(index)
    report = await opened.served.batcher.call(lambda encoder: _add(opened, items, positions))
    report["failed"] = sorted(failed + report["failed"], key=lambda entry: entry["item"])
    return report
