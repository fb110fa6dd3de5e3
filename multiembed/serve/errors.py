"""One JSON error shape for every failure, and the request size limit (413).

Every error a client sees is ``{"error": {"message", "type", "item"}}`` (OpenAI's shape, plus the
index of the offending input), whatever raised it: our own checks, FastAPI's schema validation,
Starlette's routing, or multiembed's errors. The size limit is enforced twice: a declared
Content-Length over it is refused before the body is read, and a body sent without one (chunked) is
counted as it streams in and refused the moment it passes the limit.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from multiembed.errors import (
    BackendError,
    CollectionNotFoundError,
    ConfigError,
    InputError,
    ModelNotFoundError,
    MultiembedError,
    SchemaMismatchError,
)
from multiembed.serve.batcher import ItemFailure, QueueFull, WorkerDead

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("multiembed.serve")

_TYPES = {401: "authentication_error", 403: "permission_error"}


class ApiError(Exception):
    """A refusal with its status code, the message a user reads, and which input it is about."""

    def __init__(self, status: int, message: str, item: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.item = status, message, item


class RequestTooLarge(HTTPException):
    """Raised while the body streams in, the moment it passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: over the limit of {limit:,} bytes")


def error_body(status: int, message: str, item: int | None = None) -> dict[str, Any]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "item": item}}


def error_response(
    status: int, message: str, item: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, item), status_code=status, headers=headers)


#: what a BackendError says when the database is there but cannot be had right now (503, not 500)
_UNAVAILABLE = ("another process is using it", "cannot connect to Milvus")
#: how long a client told "busy" (503) should wait before retrying, in seconds
RETRY_AFTER = "1"


def status_of(error: MultiembedError) -> int:
    """The HTTP status of one of multiembed's errors: the caller's fault is 4xx, the server's 5xx.

    A Milvus failure is the server's (500, or 503 when the database is held by another process or
    unreachable): the one Milvus refusal that is the caller's, a bad filter, is told apart where
    the filter is used (``routes_collections.search_store``) and answered 400 there.
    """
    if isinstance(error, (WorkerDead, QueueFull)):
        return 503
    if isinstance(error, (CollectionNotFoundError, ModelNotFoundError)):
        return 404
    if isinstance(error, (InputError, ItemFailure, ConfigError, SchemaMismatchError)):
        return 400
    if isinstance(error, BackendError) and any(text in str(error) for text in _UNAVAILABLE):
        return 503
    return 500


def _multiembed_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, MultiembedError)
    status = status_of(error)
    item = error.index if isinstance(error, ItemFailure) else None
    message = str(error)
    if isinstance(error, CollectionNotFoundError):  # its own text tells Python callers how to create one
        there = ", ".join(error.existing) or "none"
        message = f"collection {error.collection!r} does not exist (collections there: {there})"
    if status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, error)
    headers = {"Retry-After": RETRY_AFTER} if isinstance(error, QueueFull) else None
    return error_response(status, message, item, headers)


def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.message, error.item)


def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    return error_response(error.status_code, str(error.detail), headers=headers)


def _validation_error(request: Request, error: Exception) -> Response:
    problems: list[dict[str, Any]] = list(getattr(error, "errors", list)())
    item: int | None = None
    parts = []
    for problem in problems[:5]:
        location = [str(part) for part in problem.get("loc", ()) if part != "body"]
        numbers = [part for part in problem.get("loc", ()) if isinstance(part, int)]
        if item is None and numbers:
            item = numbers[0]
        parts.append(f"{'.'.join(location) or 'body'}: {problem.get('msg', 'invalid')}")
    return error_response(422, "; ".join(parts) or "invalid request", item)


def _disconnected(request: Request, error: Exception) -> Response:
    """The client left before sending its whole body: nobody reads the answer; nothing to log."""
    return Response(status_code=400)


def _internal(request: Request, error: Exception) -> Response:
    logger.exception("%s %s: internal error", request.method, request.url.path)
    return error_response(500, f"internal error: {type(error).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError

    validation: type[RequestValidationError] = RequestValidationError
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(MultiembedError, _multiembed_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(validation, _validation_error)
    app.add_exception_handler(ClientDisconnect, _disconnected)
    app.add_exception_handler(Exception, _internal)


def parse_json(body: bytes) -> Any:
    """The request's JSON, or a 400 that says where it is malformed."""
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed JSON: the body is not UTF-8") from None
    except ValueError as error:
        raise ApiError(400, f"malformed JSON: {error}") from None
    except RecursionError:  # [[[[... a hundred thousand deep: the parser's stack, not the server's
        raise ApiError(400, "malformed JSON: nested too deeply") from None


class SizeLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await error_response(400, "Content-Length is not a number")(scope, receive, send)
                    return
                if declared > self.limit:
                    # No "Connection: close": uvicorn then reads and drops the rest of the body
                    # (for at most its keep-alive timeout), so the client, still sending, gets this
                    # answer instead of a reset connection.
                    await error_response(413, RequestTooLarge(self.limit).detail)(scope, receive, send)
                    return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise RequestTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)
