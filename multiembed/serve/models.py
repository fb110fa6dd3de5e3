"""Which encoders the server holds, how requests name them, and the collections it has open.

Served models come from ``--model`` and start loading (each on its own worker thread) when the
server starts; a bad spec fails before that, naming the problem. A searched collection is opened
with ``MilvusStore``'s own reopen path: with a served encoder when that one's identity matches what
the collection recorded, else with the encoder the collection records, which then gets a worker of
its own and is served too. Reads that need no model (the list of collections, an item's source)
go through one catalogue client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyio import to_thread

from multiembed.errors import CollectionNotFoundError, ModelNotFoundError, MultiembedError
from multiembed.identity import mismatches
from multiembed.milvus.client import LITE_MARKER, close_client, is_lite, lite_path, open_client
from multiembed.serve.batcher import Batcher, WorkerDead, stop_all
from multiembed.serve.errors import ApiError

if TYPE_CHECKING:
    from multiembed.encoder import Encoder
    from multiembed.milvus.client import GuardedClient
    from multiembed.milvus.results import CollectionSummary
    from multiembed.milvus.schema import CollectionInfo
    from multiembed.milvus.store import MilvusStore
    from multiembed.serve.settings import ModelSpec, ServeSettings

logger = logging.getLogger("multiembed.serve")


@dataclass
class Served:
    """A model requests can name: its worker, and every name that reaches it (lower case)."""

    name: str
    modality: str
    batcher: Batcher
    dimension: int | None = None
    aliases: set[str] = field(default_factory=set)

    @property
    def dim(self) -> int | None:
        encoder = self.batcher.encoder
        return encoder.dim if encoder is not None else self.dimension


@dataclass
class OpenCollection:
    """A collection being served: its store, the worker whose encoder it uses, a lock for its client."""

    name: str
    store: MilvusStore
    served: Served
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelPool:
    """The models and collections of one server."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.created = int(time.time())
        self._served: dict[str, Served] = {}
        self._collections: dict[str, OpenCollection] = {}
        self._opening = asyncio.Lock()
        self._catalog: GuardedClient | None = None
        self._catalog_lock = threading.Lock()
        self._loaded: set[str] = set()  # collections the catalogue client has loaded
        for spec in settings.model_specs():
            self._add_spec(spec)

    # ---- served models --------------------------------------------------------------------------
    def _batcher(self, name: str, load: Callable[[], Encoder]) -> Batcher:
        settings = self.settings
        return Batcher(
            name,
            load,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            batching=settings.batching,
            max_queue=settings.max_queue,
        )

    def _add_spec(self, spec: ModelSpec) -> None:
        """Check the spec names a loadable model (weights are read later, on the worker)."""
        import multiembed
        from multiembed.models import FOLDER_OPTION, resolve_model
        from multiembed.registry import get

        modality = get(spec.modality)
        try:
            resolved = resolve_model(modality, spec.model)
        except ModelNotFoundError as error:
            if not self.settings.default_models:  # serve names a folder as NAME=MODALITY:PATH
                serve_option = f"--model {spec.name}={spec.modality}:/path/to/folder"
                raise ModelNotFoundError(str(error).replace(FOLDER_OPTION, serve_option)) from None
            logger.warning("not serving the default %s model: %s", spec.modality, error)
            return
        device = self.settings.device
        load = lambda: multiembed.load(spec.modality, spec.model, device=device)  # noqa: E731
        served = Served(spec.name, spec.modality, self._batcher(spec.name, load))
        names = [spec.name, spec.model, resolved.model_id]
        if resolved.info is not None:
            names += [resolved.info.alias, resolved.info.hub_id]
            served.dimension = resolved.info.dim
        if not any(other.modality == spec.modality for other in self._served.values()):
            names.append(spec.modality)  # the first model of a modality answers to its name too
        served.aliases = {name.lower() for name in names if name}
        self._served[spec.name] = served

    @property
    def served(self) -> list[Served]:
        return list(self._served.values())

    def find(self, name: str) -> Served:
        """The served model a request names (its name, alias, hub id or model path), else a 404."""
        if name in self._served:
            return self._served[name]
        key = name.lower()
        for served in self._served.values():
            encoder = served.batcher.encoder
            if key in served.aliases or (encoder is not None and key == encoder.model_id.lower()):
                return served
        names = ", ".join(self._served) or "none (start the server with --model MODALITY[:MODEL])"
        raise ApiError(404, f"model {name!r} is not served here; served models: {names}")

    def start(self) -> None:
        for served in self._served.values():
            served.batcher.start()

    def close(self) -> None:
        # One shared deadline for all workers (Ctrl+C while models load must not wait 10 s each).
        stop_all([served.batcher for served in self._served.values()])
        for open_collection in self._collections.values():
            open_collection.store.close()
        self._collections.clear()
        if self._catalog is not None:
            close_client(self._catalog)
            self._catalog = None

    # ---- the catalogue: reads that need no model --------------------------------------------
    def _missing_database(self) -> bool:
        uri = self.settings.uri
        return is_lite(uri) and not (Path(lite_path(uri)) / LITE_MARKER).is_dir()

    def catalog(self) -> GuardedClient | None:
        """The client for model-free reads; None while a Milvus Lite database does not exist yet."""
        with self._catalog_lock:
            if self._catalog is None and not self._missing_database():
                self._catalog = open_client(self.settings.uri, create=False)
            return self._catalog

    def summaries(self) -> list[CollectionSummary]:
        """Every collection with its count and identity (blocking: call it off the event loop).

        Read through the one catalogue client, under its lock: a client per call, opened and closed
        from worker threads, would race on the count of the database's users.
        """
        from multiembed.milvus.client import row_count
        from multiembed.milvus.results import CollectionSummary
        from multiembed.milvus.schema import DAMAGED_HINT, CollectionInfo, check_rows

        client = self.catalog()
        if client is None:
            return []
        summaries = []
        with self._catalog_lock:
            for name in sorted(client.list_collections()):
                rows = row_count(client, name)
                description = client.describe_collection(name)
                damage = check_rows(name, description, rows) if is_lite(self.settings.uri) else None
                summaries.append(
                    CollectionSummary(
                        name,
                        rows,
                        CollectionInfo.from_description(description),
                        f"{damage}; {DAMAGED_HINT}" if damage else None,
                    )
                )
        return summaries

    def recorded(self, name: str) -> CollectionInfo:
        """What a collection recorded about its encoder; 404 if it is not there."""
        from multiembed.milvus.schema import CollectionInfo

        client = self.catalog()
        if client is None:
            raise CollectionNotFoundError(name, self.settings.uri, [])
        with self._catalog_lock:
            if not client.has_collection(name):
                raise CollectionNotFoundError(name, self.settings.uri, sorted(client.list_collections()))
            info = CollectionInfo.from_description(client.describe_collection(name))
        if info is None:
            raise ApiError(400, f"collection {name!r} was not made by multiembed (no encoder recorded)")
        return info

    def query(self, name: str, ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
        """Rows of a collection by id (blocking).

        A collection is "released" in a process that has not loaded it (a server just started, no
        search yet), and Milvus refuses reads from it: it is loaded here first, once.
        """
        client = self.catalog()
        if client is None:
            raise CollectionNotFoundError(name, self.settings.uri, [])
        with self._catalog_lock:
            if name not in self._loaded:
                client.load_collection(name)
                self._loaded.add(name)
            try:
                rows: list[dict[str, Any]] = client.query(name, ids=ids, output_fields=fields)
            except MultiembedError:
                self._loaded.discard(name)  # released meanwhile (dropped, recreated): load next time
                raise
        return rows

    def media_path(self, source: str) -> Path:
        """Where a recorded source is: relative ones under the media root, absolute ones as they are."""
        return Path(self.settings.media_root, source)

    # ---- collections being searched ------------------------------------------------------------
    async def collection(self, name: str) -> OpenCollection:
        """The open collection ``name``, opening it (and its encoder, if none served matches) once."""
        if name in self._collections:
            return self._collections[name]
        async with self._opening:
            if name not in self._collections:
                info = await to_thread.run_sync(self.recorded, name)
                self._collections[name] = await self._open(name, info)
        return self._collections[name]

    async def _open(self, name: str, info: CollectionInfo) -> OpenCollection:
        from multiembed.milvus.store import MilvusStore

        uri = self.settings.uri
        for served in self.served:
            try:
                config = await served.batcher.call(lambda encoder: encoder.config())
            except WorkerDead:
                continue
            encoder = served.batcher.encoder
            if encoder is not None and not mismatches(info.config, config):
                store = await to_thread.run_sync(functools.partial(MilvusStore, uri, name, encoder))
                return OpenCollection(name, store, served)
        device = self.settings.device
        try:
            store = await to_thread.run_sync(lambda: MilvusStore(uri, name, device=device))
        except MultiembedError as error:
            raise ApiError(
                503, f"cannot load the model collection {name!r} was built with: {error}"
            ) from None
        return OpenCollection(name, store, self._serve_encoder(name, info, store.encoder))

    def _serve_encoder(self, collection: str, info: CollectionInfo, encoder: Encoder) -> Served:
        """Give a collection's own encoder a worker, and serve it under its recorded model id."""
        taken = {served.name.lower() for served in self.served} | {
            alias for served in self.served for alias in served.aliases
        }
        name = info.model if info.model.lower() not in taken else f"{info.model}@{collection}"
        served = Served(
            name, info.modality, self._batcher(name, lambda: encoder), encoder.dim, {name.lower()}
        )
        self._served[name] = served
        served.batcher.start()
        return served
