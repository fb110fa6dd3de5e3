"""The optional bearer token: when a key is set, no route answers without it.

It is ASGI middleware rather than a FastAPI dependency so that nothing escapes it: unknown paths,
static files, the OpenAPI schema and the docs are guarded as well. The key is compared in constant
time. Browsers cannot put a header on ``<img src>`` / ``<video src>`` or a typed address, so GET
requests may carry the key as ``?key=`` instead (the search page and its media use that).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from multiembed.serve.errors import error_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send


def key_matches(given: str | None, key: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8"))


def bearer_of(header: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    if header is None:
        return None
    scheme, _, token = header.decode("latin-1").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class BearerAuth:
    """ASGI middleware: 401 for every request without the key (header, or ``?key=`` on GET)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self.key = app, key

    def _given(self, scope: Scope) -> str | None:
        headers = dict(scope["headers"])
        token = bearer_of(headers.get(b"authorization"))
        if token is None and scope.get("method") in ("GET", "HEAD"):
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
            token = next((value for name, value in query if name == "key"), None)
        return token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or key_matches(self._given(scope), self.key):
            await self.app(scope, receive, send)
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
