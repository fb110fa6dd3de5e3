"""``multiembed serve``: the HTTP API and search page, on uvicorn.

The parser part is imported by every command, so this module imports no web library at the top:
FastAPI and uvicorn are imported only when the command runs, and their absence is one line.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import socket
import sys

from multiembed.cli import common
from multiembed.milvus.client import DEFAULT_URI
from multiembed.serve.settings import API_KEY_ENV, ServeSettings

INSTALL_HINT = "multiembed serve needs FastAPI and uvicorn: pip install 'multiembed[serve]'"


def add_serve_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve embeddings (OpenAI-compatible) and collection search over HTTP, with a search page",
        description="Serve POST /v1/embeddings (OpenAI's API, plus files), GET /v1/models, "
        "GET /collections, POST /collections/NAME/search and /items, and a search page at /. "
        "Concurrent requests for one model are embedded together (dynamic batching). "
        "API docs at /docs. Needs the serve extra: pip install 'multiembed[serve]'.",
    )
    serve.add_argument("--uri", default=DEFAULT_URI,
                       help=f"Milvus Lite file or server URL (default: {DEFAULT_URI})")  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    serve.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]MODALITY[:MODEL]",
        help="a model to serve, repeatable, e.g. text, image-text:clip, mini=text:/models/minilm "
        "(default: text; collections are searched with the model they were built with)",
    )
    serve.add_argument("--device", default="auto", help="where the models run (default: auto)")
    serve.add_argument(
        "--api-key",
        help=f"require 'Authorization: Bearer KEY' on every route (default: ${API_KEY_ENV} if set)",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="listen on a non-loopback address without an API key (behind your own auth proxy only)",
    )
    serve.add_argument("--max-request-mb", type=float, default=32,
                       help="largest request body, in MiB; bigger ones get 413 (default: 32)")  # fmt: skip
    serve.add_argument("--no-batching", action="store_true",
                       help="embed every request alone instead of merging concurrent ones")  # fmt: skip
    serve.add_argument("--max-batch", type=int, default=64,
                       help="most items merged into one forward pass (default: 64)")  # fmt: skip
    serve.add_argument("--max-wait-ms", type=float, default=5.0,
                       help="how long a request waits for others to join its batch (default: 5)")  # fmt: skip
    serve.add_argument(
        "--media-root",
        metavar="DIR",
        help="folder that relative recorded sources (multiembed index photos records photos/a.jpg) are "
        "found under (default: the folder serve is started in: start it where you indexed)",
    )
    serve.add_argument("--max-queue", type=int, default=1024,
                       help="most items waiting per model; more get 503 (default: 1024)")  # fmt: skip
    serve.add_argument("--max-audio-seconds", type=float, default=3600,
                       help="longest audio upload embedded, in seconds by its header; 0: no limit "
                       "(default: 3600)")  # fmt: skip
    serve.add_argument("--limit-concurrency", type=int, default=256,
                       help="most connections served at once; more get 503 (default: 256)")  # fmt: skip
    serve.add_argument("-v", "--verbose", action="store_true", help="log every request, and library logs")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening socket: a port in use is a one-line error here, not a uvicorn traceback."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as error:
        raise common.UsageError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def settings_from(args: argparse.Namespace) -> ServeSettings:
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback(args.host) and not api_key and not args.insecure_no_auth:
        raise common.UsageError(
            f"refusing to listen on {args.host} without an API key: anyone who can reach it could embed, "
            f"add to and search the collections and read their files; set --api-key or {API_KEY_ENV} "
            "(or pass --insecure-no-auth when your own proxy checks who connects)"
        )
    if not args.max_audio_seconds >= 0:  # also NaN
        raise common.UsageError(
            f"--max-audio-seconds must be >= 0 (0: no limit), got {args.max_audio_seconds}"
        )
    if args.max_request_mb <= 0:
        raise common.UsageError(f"--max-request-mb must be > 0, got {args.max_request_mb}")
    return ServeSettings(
        uri=args.uri,
        models=args.model or ["text"],
        default_models=not args.model,
        api_key=api_key,
        max_request_bytes=int(args.max_request_mb * 1024 * 1024),
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        batching=not args.no_batching,
        device=args.device,
        media_root=os.path.abspath(args.media_root or os.getcwd()),
        max_queue=args.max_queue,
        max_audio_seconds=args.max_audio_seconds or None,
        limit_concurrency=args.limit_concurrency,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise common.UsageError(INSTALL_HINT) from None
    if importlib.util.find_spec("python_multipart") is None and importlib.util.find_spec("multipart") is None:
        raise common.UsageError(INSTALL_HINT)  # file uploads need python-multipart
    from multiembed.milvus.client import silence_library_logs
    from multiembed.serve.app import create_app
    from multiembed.serve.auth import redact_access_log

    settings = settings_from(args)
    if not args.verbose:
        silence_library_logs()
    common.quiet_libraries()
    app = create_app(settings)
    sock = listening_socket(args.host, args.port)
    names = ", ".join(served.name for served in app.state.pool.served) or "none"
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"multiembed: serving {settings.uri} (models: {names}) on http://{shown}:{args.port} "
        f"(API docs: /docs); media from {settings.media_root}"
        f"{'; every route needs the API key' if settings.api_key else ''}",
        file=sys.stderr,
    )
    config = uvicorn.Config(
        app,
        log_level="info" if args.verbose else "warning",
        access_log=args.verbose,
        timeout_graceful_shutdown=5,
        limit_concurrency=settings.limit_concurrency,
    )
    redact_access_log()  # after uvicorn.Config, which configures its loggers
    uvicorn.Server(config).run(sockets=[sock])
    return common.EXIT_OK
