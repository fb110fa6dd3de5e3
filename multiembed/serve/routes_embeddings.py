"""``POST /v1/embeddings`` (OpenAI's API, extended to files), ``GET /v1/models`` and ``GET /healthz``."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from multiembed.serve.errors import ApiError, parse_json
from multiembed.serve.inputs import is_multipart, plan_for, read_form, too_long, values_for
from multiembed.serve.schemas import EmbeddingRequest, EmbeddingResponse, Health, ModelCard, ModelList

if TYPE_CHECKING:
    from multiembed.serve.models import ModelPool

router = APIRouter()
T = TypeVar("T")


def pool_of(request: Request) -> ModelPool:
    return cast("ModelPool", request.app.state.pool)


def validated(model: type[Any], payload: Any) -> Any:
    """``model`` from JSON already parsed; schema problems become FastAPI's 422."""
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from None


def body_schema(model: type[Any], multipart: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads JSON or a multipart form itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                "multipart/form-data": {"schema": {"type": "object", "properties": multipart}},
            },
        }
    }


_FILES = {"type": "array", "items": {"type": "string", "format": "binary"}}
_EMBED_FORM = {"model": {"type": "string"}, "modality": {"type": "string"}, "file": _FILES}


async def _read_request(request: Request) -> tuple[EmbeddingRequest, list[Any] | None]:
    """The request, and for multipart its files' bytes (its JSON form has them in ``input``)."""
    settings = pool_of(request).settings
    if not is_multipart(request):
        parsed: EmbeddingRequest = validated(EmbeddingRequest, parse_json(await request.body()))
        return parsed, None
    form = await read_form(request, settings.max_inputs)
    known = ("model", "modality", "encoding_format", "role", "dimensions")
    fields = {key: value for key, value in form.fields.items() if key in known}
    parsed = validated(EmbeddingRequest, {**fields, "input": [name for name, _ in form.files]})
    if not form.files:
        raise ApiError(400, "a multipart request needs one or more 'file' parts")
    return parsed, [data for _, data in form.files]


async def _gone(request: Request) -> None:
    """Returns once the client has hung up (uvicorn answers ``receive`` then, the body being read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_gone(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result; cancelled if the client leaves first, so a queued request is not embedded
    for nobody (the worker skips a request whose future was cancelled)."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_gone(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        raise ClientDisconnect()
    return task.result()


def _texts(raw: Any) -> list[str]:
    inputs = [raw] if isinstance(raw, str) else list(raw)
    if inputs and not all(isinstance(item, str) for item in inputs):
        raise ApiError(400, "token arrays are not accepted: send the texts themselves")
    return cast("list[str]", inputs)


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    openapi_extra=body_schema(EmbeddingRequest, _EMBED_FORM),
    summary="Embed texts (OpenAI-compatible) or files",
)
async def create_embeddings(request: Request) -> Response:
    """Vectors for every input, in order; one bad input refuses the request, naming it (400)."""
    pool = pool_of(request)
    parsed, files = await _read_request(request)
    inputs = _texts(parsed.input)
    if not inputs:
        raise ApiError(400, "input is empty: give a text or a list of them")
    if len(inputs) > pool.settings.max_inputs:
        raise ApiError(400, f"{len(inputs)} inputs: at most {pool.settings.max_inputs} per request")
    served = pool.find(parsed.model)
    encoder = await served.batcher.ready()
    primary = encoder.outputs[0]
    if primary.kind != "dense":
        raise ApiError(
            400, f"model {served.name!r} gives {primary.kind} vectors; this route returns dense ones"
        )
    if parsed.dimensions is not None and parsed.dimensions != primary.dim:
        raise ApiError(400, f"model {served.name!r} gives {primary.dim}-d vectors, not {parsed.dimensions}")
    plan = plan_for(encoder, served.name, parsed.modality, parsed.role, files is not None)
    values = files if files is not None else values_for(inputs, plan.media)
    if plan.media == "audio":
        refusals = await too_long(values, pool.settings.max_audio_seconds)
        for index, reason in enumerate(refusals):
            if reason is not None:
                raise ApiError(400, f"input[{index}]: {reason}", index)
    encoded = await unless_gone(request, served.batcher.encode(values, plan.role))
    vectors = np.asarray(encoded.outputs[encoded.specs[0].name], dtype="<f4")
    if parsed.encoding_format == "base64":
        embeddings: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in vectors]
    else:
        embeddings = vectors.tolist()
    tokens = (
        sum(len(text.split()) for text in inputs) if plan.media == "text" and files is None else len(inputs)
    )
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": embedding}
            for index, embedding in enumerate(embeddings)
        ],
        "model": served.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Response(json.dumps(body), media_type="application/json")


@router.get("/v1/models", response_model=ModelList, summary="The models this server embeds with")
async def list_models(request: Request) -> ModelList:
    pool = pool_of(request)
    cards = [
        ModelCard(
            id=served.name,
            created=pool.created,
            modality=served.modality,
            dimension=served.dim,
            status=served.batcher.state,
        )
        for served in pool.served
    ]
    return ModelList(data=cards)


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "a model is still loading, or its worker is dead"}},
    summary="Whether every model is loaded and its worker alive",
)
async def health(request: Request) -> JSONResponse:
    """200 only when every model can answer now: a load balancer must not send work to a server
    whose models are still loading (``status`` says ``loading``; ``models`` has each one's state)."""
    states: dict[str, str] = {served.name: served.batcher.state for served in pool_of(request).served}
    values = set(states.values())
    status = "dead" if "dead" in values else "loading" if "loading" in values else "ok"
    body = Health(status=status, models=states)
    return JSONResponse(body.model_dump(), status_code=200 if status == "ok" else 503)
