"""Opening Milvus (a Lite file or a server) and keeping its failures inside multiembed's errors.

Every call on the client goes through :class:`GuardedClient`: a refusal from pymilvus or Milvus
Lite becomes a one-line :class:`BackendError` instead of a library traceback, and a Lite file is
freed for other processes when this process's last user closes it.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multiembed.errors import BackendError, MultiembedError

DEFAULT_URI = "./multiembed.db"


def is_lite(uri: str) -> bool:
    """A local file path means embedded Milvus Lite; a URL means a Milvus server."""
    return "://" not in uri


def lite_path(uri: str) -> str:
    """The absolute path Milvus Lite is opened with (and its server is keyed by)."""
    return str(Path(uri).expanduser().resolve())


def _reason(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return " ".join(str(message).split())[:500]


class GuardedClient:
    """A ``MilvusClient`` whose every failure is raised as :class:`BackendError` with Milvus' reason."""

    def __init__(self, client: Any, uri: str) -> None:
        self._client = client
        self.uri = uri

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute
        return self._guard(attribute)

    @staticmethod
    def _guard(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except MultiembedError:
                raise
            except Exception as error:
                raise BackendError(f"Milvus: {_reason(error)}") from None

        return call

    @property
    def raw(self) -> Any:
        """The pymilvus client itself, for what multiembed does not wrap."""
        return self._client


#: loggers of the Milvus client libraries, which print whole tracebacks for refusals we report in one line
LIBRARY_LOGGERS = ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "milvus_lite", "grpc")


def silence_library_logs() -> None:
    """Keep pymilvus' and Milvus Lite's own error logging off the terminal (the CLI, unless -v).

    pymilvus configures its loggers when imported, so it is imported here first.
    """
    import logging

    import pymilvus  # noqa: F401  (its import installs the handlers being quieted)

    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


#: Milvus Lite files this process has open, with how many clients use each.
_LITE_USERS: Counter[str] = Counter()


def open_client(uri: str) -> GuardedClient:
    """Connect to a server, or open (creating if needed) a Milvus Lite file."""
    from pymilvus import MilvusClient

    if is_lite(uri):
        path = Path(lite_path(uri))
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = str(path)
    try:
        client = MilvusClient(uri)
    except Exception as error:
        if is_lite(uri):
            raise BackendError(
                f"cannot open Milvus Lite database {uri}: another process is using it (Milvus Lite "
                f"allows one process per file) or the file is damaged ({_reason(error)})"
            ) from None
        raise BackendError(f"cannot connect to Milvus at {uri} ({_reason(error)})") from None
    if is_lite(uri):
        _LITE_USERS[uri] += 1
    return GuardedClient(client, uri)


def close_client(client: GuardedClient) -> None:
    """Close, and on Milvus Lite free the file for other processes once this process is done with it.

    Milvus Lite keeps an in-process server (and the file lock) until exit unless told otherwise.
    """
    uri = client.uri
    try:
        client.raw.close()
    finally:
        if is_lite(uri):
            _LITE_USERS[uri] -= 1
            if _LITE_USERS[uri] <= 0:
                del _LITE_USERS[uri]
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(uri)
