"""A real HTTP server on 127.0.0.1 for hosted-API tests: it speaks whatever the test's handler says.

Each test gives a handler ``(path, headers, json_body) -> (status, json_answer, extra_headers)``;
the server records every request, so tests check batching and headers as the provider would see them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, Any, dict[str, str]]
Handler = Callable[[str, dict[str, str], Any], Answer]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ProviderServer:
    url: str
    requests: list[Recorded] = field(default_factory=list)


@contextmanager
def provider_server(handler: Handler) -> Iterator[ProviderServer]:
    """Serve ``handler`` on a free port of 127.0.0.1 for the duration of the ``with`` block."""
    server_state: dict[str, ProviderServer] = {}

    class RequestHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            body = json.loads(raw) if raw else None
            headers = {key.lower(): value for key, value in self.headers.items()}
            state = server_state["state"]
            state.requests.append(Recorded(self.path, headers, body))
            status, answer, extra = handler(self.path, headers, body)
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
    server_state["state"] = ProviderServer(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state["state"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
