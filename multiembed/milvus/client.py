"""Opening Milvus (a Lite file or a server) and keeping its failures inside multiembed's errors.

Every call on the client goes through :class:`GuardedClient`: a refusal from pymilvus or Milvus
Lite becomes a one-line :class:`BackendError` instead of a library traceback, and a Lite file is
freed for other processes when this process's last user closes it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from multiembed.errors import BackendError, MultiembedError

DEFAULT_URI = "./multiembed.db"


def is_lite(uri: str) -> bool:
    """A local path means embedded Milvus Lite; a URL (or a ``unix:`` socket) means a Milvus server."""
    return "://" not in uri and not uri.startswith("unix:")


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


#: Milvus Lite databases this process has open, with how many clients use each.
_LITE_USERS: Counter[str] = Counter()

#: what every Milvus Lite (3.2) database directory holds: ``LOCK``, ``collections/``, ``databases/``
LITE_MARKER = "collections"


def _not_writable(path: Path) -> str | None:
    """Why ``path`` (an existing directory or file) cannot be written, or None."""
    if hasattr(os, "statvfs") and os.statvfs(path).f_flag & os.ST_RDONLY:
        return f"{path} is on a read-only file system"
    if not os.access(path, os.W_OK):
        return f"no write permission on {path}"
    # os.access says yes to root whatever the mode bits. A directory with no write bit at all was
    # made read-only on purpose (chmod a-w); multiembed respects that for root too rather than
    # writing past it. (This is also what lets the read-only test run truthfully as root.)
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not path.stat().st_mode & 0o222:
        return f"no write permission on {path} (mode {path.stat().st_mode & 0o777:o})"
    return None


def check_lite_path(uri: str, *, create: bool = True) -> Path:
    """The database directory for ``uri``, after checking Milvus Lite can open it as asked.

    Milvus Lite 3.2 keeps a database in a directory whose name ends in ``.db``; it opens it for
    writing even to read. Without ``create``, a missing database is an error and nothing is made.
    """
    path = Path(lite_path(uri))
    if not path.name.endswith(".db"):
        raise BackendError(
            f"Milvus Lite needs a path ending in .db, got {uri} (or pass a server URL such as "
            "http://host:19530)"
        )
    if path.exists() and not path.is_dir():
        kind = "a file" if path.is_file() else "not a directory"
        raise BackendError(
            f"{uri} is not a Milvus Lite database: it is {kind}, and Milvus Lite keeps a database "
            "in a directory"
        )
    if path.is_dir() and not (path / LITE_MARKER).is_dir() and any(path.iterdir()):
        raise BackendError(
            f"{uri} is not a Milvus Lite database: the directory has no {LITE_MARKER}/ folder "
            "(Milvus Lite makes LOCK, collections/ and databases/ in it)"
        )
    if not (path / LITE_MARKER).is_dir() and not create:
        raise BackendError(f"no Milvus Lite database at {uri}")
    if path.is_dir():
        for part in (path, path / LITE_MARKER, path / "LOCK"):
            why = _not_writable(part) if part.exists() else None
            if why:
                raise BackendError(f"cannot open Milvus Lite database {uri}: read-only location: {why}")
        return path
    parent = next(folder for folder in path.parents if folder.exists())
    if not parent.is_dir():
        raise BackendError(f"cannot create a Milvus Lite database at {uri}: {parent} is not a directory")
    why = _not_writable(parent)
    if why:
        raise BackendError(f"cannot create a Milvus Lite database at {uri}: read-only location: {why}")
    return path


@contextmanager
def _lite_start_failures() -> Iterator[list[BaseException]]:
    """Catch what Milvus Lite logs when its server cannot start (pymilvus only says "failed").

    Its server manager logs the exception and returns nothing; the logger is pointed at a list for
    the duration, so the reason reaches our message and no traceback reaches the terminal.
    """
    caught: list[BaseException] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and record.exc_info[1] is not None:
                caught.append(record.exc_info[1])

    logger = logging.getLogger("milvus_lite.server_manager")
    saved = logger.level, logger.propagate, logger.disabled
    handler = Catch(logging.ERROR)
    logger.setLevel(logging.ERROR)
    logger.propagate, logger.disabled = False, False
    logger.addHandler(handler)
    try:
        yield caught
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate, logger.disabled = saved[1], saved[2]


def _lite_open_error(uri: str, error: BaseException, caught: list[BaseException]) -> BackendError:
    from milvus_lite.exceptions import DataDirLockedError

    cause = caught[0] if caught else error
    if isinstance(cause, DataDirLockedError) and isinstance(cause.__cause__, BlockingIOError):
        return BackendError(
            f"cannot open Milvus Lite database {uri}: another process is using it (Milvus Lite "
            "allows one process per database; close the other one or wait for it to finish)"
        )
    return BackendError(
        f"cannot open Milvus Lite database {uri}: it is damaged or unreadable ({_reason(cause)})"
    )


def open_client(uri: str, *, create: bool = True) -> GuardedClient:
    """Connect to a server, or open a Milvus Lite database (creating it only if ``create``)."""
    from pymilvus import MilvusClient

    if not is_lite(uri):
        try:
            return GuardedClient(MilvusClient(uri), uri)
        except Exception as error:
            raise BackendError(f"cannot connect to Milvus at {uri} ({_reason(error)})") from None
    path = check_lite_path(uri, create=create)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lite_start_failures() as caught:
        try:
            client = MilvusClient(str(path))
        except Exception as error:
            raise _lite_open_error(uri, error, caught) from None
    _LITE_USERS[str(path)] += 1
    return GuardedClient(client, str(path))


#: how multiembed reads from a server: Strong, so what a run stored is what the next read sees (a
#: server's default, Bounded, answers from a view up to seconds old). Milvus Lite is always current.
SERVER_READS: dict[str, Any] = {"consistency_level": "Strong"}


def read_options(uri: str) -> dict[str, Any]:
    """Keyword arguments for reads (query, search) at ``uri``."""
    return {} if is_lite(uri) else dict(SERVER_READS)


def row_count(client: GuardedClient, name: str) -> int:
    """Rows in a collection. A server's statistics count only flushed segments, so a loaded server
    collection is counted with ``count(*)``; Lite's statistics (and an unloaded collection's) are exact
    enough."""
    if not is_lite(client.uri):
        try:
            rows = client.query(name, filter="", output_fields=["count(*)"], **SERVER_READS)
            return int(rows[0]["count(*)"])
        except BackendError:  # not loaded: statistics are all there is
            pass
    return int(client.get_collection_stats(name)["row_count"])


def close_client(client: GuardedClient) -> None:
    """Close, and on Milvus Lite free the database for other processes once this process is done.

    Milvus Lite keeps an in-process server (and the database lock) until exit unless told otherwise.
    """
    uri = client.uri
    try:
        client.raw.close()
    except Exception as error:  # closing a broken connection: say so, but free the file below
        raise BackendError(f"Milvus: closing {uri} failed ({_reason(error)})") from None
    finally:
        if is_lite(uri):
            _LITE_USERS[uri] -= 1
            if _LITE_USERS[uri] <= 0:
                del _LITE_USERS[uri]
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(uri)
