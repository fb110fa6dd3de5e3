"""The optional API key: when a key is set, no route answers without it.

It is ASGI middleware rather than a FastAPI dependency so that nothing escapes it: unknown paths,
static files, the OpenAPI schema and the docs are guarded as well. The key is compared in constant
time. API clients send ``Authorization: Bearer KEY``. A browser cannot put a header on a typed
address or on ``<img src>`` / ``<video src>``, so the search page is opened once with ``?key=``:
that GET answers with an HttpOnly, SameSite=Strict cookie holding the key, which the page's own
requests and media then carry, and the page drops ``key`` from its address. Keeping the key out of
later URLs keeps it out of access logs, history and Referer headers; the access log redacts the one
URL that carried it (:class:`RedactKey`).
"""

from __future__ import annotations

import hmac
import logging
import re
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from multiembed.serve.errors import error_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: the cookie the page's requests carry the key in
COOKIE = "multiembed_key"
_KEY_PARAMETER = re.compile(r"(?i)([?&]key=)[^&#\s\"]*")


def key_matches(given: str | None, key: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8"))


def bearer_of(header: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    if header is None:
        return None
    scheme, _, token = header.decode("latin-1").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def cookie_of(header: bytes | None) -> str | None:
    """The key in a ``Cookie`` header, or None."""
    if header is None:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(header.decode("latin-1"))
    except Exception:  # a malformed Cookie header carries no key
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel is not None else None


def key_cookie(key: str) -> bytes:
    """The ``Set-Cookie`` value that hands the page the key: not readable by scripts, same site only."""
    cookies: SimpleCookie = SimpleCookie()
    cookies[COOKIE] = key
    cookies[COOKIE]["path"] = "/"
    cookies[COOKIE]["httponly"] = True
    cookies[COOKIE]["samesite"] = "Strict"
    return cookies[COOKIE].OutputString().encode("latin-1")


def redact(text: str) -> str:
    """``text`` with the value of every ``key=`` query parameter replaced."""
    return _KEY_PARAMETER.sub(r"\1[redacted]", text)


class RedactKey(logging.Filter):
    """Rewrites uvicorn's access log lines so no ``?key=...`` reaches a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def redact_access_log() -> None:
    """Install :class:`RedactKey` on uvicorn's access logger (once)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactKey) for existing in logger.filters):
        logger.addFilter(RedactKey())


class BearerAuth:
    """ASGI middleware: 401 for every request without the key (bearer header, cookie, or ``?key=``
    on a GET, which also sets the cookie)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self.key = app, key

    def _given(self, scope: Scope) -> tuple[str | None, bool]:
        """The key the request carries, and whether it came as ``?key=`` (then the cookie is set)."""
        headers = dict(scope["headers"])
        token = bearer_of(headers.get(b"authorization"))
        if token is not None:
            return token, False
        if scope.get("method") in ("GET", "HEAD"):
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
            token = next((value for name, value in query if name == "key"), None)
            if token is not None:
                return token, True
        return cookie_of(headers.get(b"cookie")), False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token, in_query = self._given(scope)
        if key_matches(token, self.key):
            await self.app(scope, receive, self._setting_cookie(send) if in_query else send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = error_response(
            401,
            "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def _setting_cookie(self, send: Send) -> Send:
        cookie = key_cookie(self.key)

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"set-cookie", cookie))
                message = {**message, "headers": headers}
            await send(message)

        return with_cookie
