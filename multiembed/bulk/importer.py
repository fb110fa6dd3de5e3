"""Importing an export into a collection on a Milvus server, which reads the files itself.

The collection is made from the identity the manifest records (no model is loaded), or an existing
one is checked against it. Bulk import does not upsert, so the collection records which files it
imported (:data:`IMPORTED_PROPERTY`) and running the import again imports only the files not in yet.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiembed.bulk.layout import FORMAT, MANIFEST
from multiembed.errors import BackendError, ConfigError, SchemaMismatchError

if TYPE_CHECKING:
    from multiembed.milvus.client import GuardedClient
    from multiembed.milvus.schema import CollectionInfo

#: collection property: the export files already imported into it (JSON list of "<export>/<file>")
IMPORTED_PROPERTY = "multiembed.imported"


@dataclass(frozen=True)
class Export:
    """A folder :func:`~multiembed.bulk.export_bulk` wrote, as its manifest describes it."""

    directory: Path
    info: CollectionInfo
    files: list[list[str]]
    rows: int

    @classmethod
    def read(cls, directory: str | Path) -> Export:
        from multiembed.milvus.schema import CollectionInfo

        folder = Path(directory)
        path = folder / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{folder} holds no {MANIFEST}: not a finished `multiembed export-bulk` run"
            ) from None
        except ValueError as error:
            raise ConfigError(f"{path} is damaged ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ConfigError(f"{path} is not a multiembed bulk export manifest")
        try:
            record = manifest["collection"]
            info = CollectionInfo(
                record["config"], bool(record["hybrid"]), dict(record["fields"]), bool(record["keeps_text"])
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(f"{path} records no collection identity ({error})") from None
        files = [[str(name) for name in group] for group in manifest["files"]]
        missing = [name for group in files for name in group if not (folder / name).is_file()]
        if missing:
            raise ConfigError(f"{folder}: files listed in {MANIFEST} are missing: {', '.join(missing[:5])}")
        return cls(folder, info, files, int(manifest["rows"]))


def _imported(client: GuardedClient, collection: str) -> list[str]:
    raw = (client.describe_collection(collection).get("properties") or {}).get(IMPORTED_PROPERTY)
    return list(json.loads(raw)) if raw else []


def _collection_for(
    client: GuardedClient, uri: str, collection: str, export: Export, index_type: str, params: Any
) -> None:
    """Check the server and an existing collection against the export, or make the collection."""
    from multiembed.identity import mismatches
    from multiembed.milvus.schema import CollectionInfo, index_params_of, schema_of
    from multiembed.milvus.store import create_collection
    from multiembed.milvus.versions import check_server, needed_features, server_index_params, server_version

    info = export.info
    check_server(uri, *server_version(client), features=needed_features(info.outputs, info.hybrid),
                 index_type=index_type)  # fmt: skip
    if client.has_collection(collection):
        existing = CollectionInfo.from_description(client.describe_collection(collection))
        if existing is None:
            raise SchemaMismatchError(f"collection {collection!r} was not created by multiembed")
        problems = mismatches(existing.config, info.config, where="collection")
        if existing.hybrid != info.hybrid:
            problems.append(f"BM25: collection has {existing.hybrid}, export has {info.hybrid}")
        if problems:
            raise SchemaMismatchError(
                f"collection {collection!r} and {export.directory}: " + "; ".join(problems)
            )
        return
    dense = [spec for spec in info.outputs if spec.kind == "dense"]
    params = server_index_params(index_type, dense[0].dim, params) if dense else params
    create_collection(
        client,
        collection,
        schema=schema_of(info),
        index_params=index_params_of(info.outputs, index_type, params=params, hybrid=info.hybrid),
        properties=info.to_property(),
    )


def _wait(handler: Any, tasks: dict[int, str], timeout: float) -> int:
    """Wait for every import task to complete; the rows they imported. A failed task is one line."""
    from pymilvus.client.types import BulkInsertState

    deadline = time.monotonic() + timeout
    rows = 0
    pending = dict(tasks)
    while pending:
        for task, name in list(pending.items()):
            state = handler.get_bulk_insert_state(task)
            if state.state in (BulkInsertState.ImportFailed, BulkInsertState.ImportFailedAndCleaned):
                reason = " ".join(str(state.infos.get("failed_reason", "")).split())
                raise BackendError(f"Milvus could not import {name}: {reason or state.state_name}")
            if state.state == BulkInsertState.ImportCompleted:
                rows += int(state.row_count)
                del pending[task]
        if pending and time.monotonic() > deadline:
            raise BackendError(f"bulk import of {len(pending)} file(s) not finished after {timeout:.0f}s")
        if pending:
            time.sleep(0.5)
    return rows


def import_bulk(
    uri: str,
    collection: str,
    directory: str | Path,
    *,
    server_path: str | None = None,
    index_type: str = "AUTOINDEX",
    index_params: dict[str, Any] | None = None,
    timeout: float = 3600.0,
) -> int:
    """Import an export's files into ``collection`` on the Milvus server at ``uri``; rows imported.

    The server reads the files itself: ``server_path`` is where it sees ``directory`` (by default
    the folder's absolute path, right for a server on this machine with local storage, such as the
    ``milvus`` package's; for MinIO/S3, upload the folder and give its path in the bucket). The
    collection is made from the recorded identity if it does not exist; an existing one must hold
    the same encoder's vectors. Files imported before (recorded in the collection) are skipped.
    Import does not upsert: an item the collection already holds from an ``add``/``index`` run
    becomes a second row, so import into a new collection, or one filled by imports only.
    """
    from multiembed.milvus.client import GuardedClient, close_client, is_lite, open_client

    if is_lite(uri):
        raise ConfigError(
            f"{uri} is Milvus Lite, which has no bulk import; store with `multiembed index` or "
            "MilvusStore, or give a server URL (http://host:19530)"
        )
    export = Export.read(directory)
    root = server_path.rstrip("/") if server_path else str(export.directory.resolve())
    client = open_client(uri)
    try:
        _collection_for(client, uri, collection, export, index_type, index_params)
        done = _imported(client, collection)
        handler = GuardedClient(client.raw._get_connection(), uri)  # the gRPC Import call Milvus 2.3+ has
        rows = 0
        # one file per task (what Milvus 2.3 takes for row-based files); each file's name holds its
        # export's uuid, so the names recorded say which files of which export are in already
        for name in (name for group in export.files for name in group if name not in done):
            task = handler.do_bulk_insert(collection, "", [f"{root}/{name}"])
            rows += _wait(handler, {task: name}, timeout)
            done.append(name)
            client.alter_collection_properties(collection, properties={IMPORTED_PROPERTY: json.dumps(done)})
        # segments imported into a loaded collection are served once it is loaded again
        client.load_collection(collection, refresh=True)
        return rows
    finally:
        close_client(client)
