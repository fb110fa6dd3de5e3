"""What the store hands back: search hits, add reports and the list of collections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from multiembed.embeddings import ItemError
from multiembed.errors import CollectionNotFoundError
from multiembed.milvus.client import DEFAULT_URI, close_client, is_lite, open_client, row_count
from multiembed.milvus.schema import DAMAGED_HINT, CollectionInfo, check_rows


@dataclass(frozen=True)
class Hit:
    """One search result: the item's id, its score, where it came from, other fields.

    ``score`` is what ``score_kind`` says: a similarity (cosine/ip), a distance (l2), or a fusion score.
    """

    id: str
    score: float
    source: str
    fields: dict[str, Any] = field(default_factory=dict)
    score_kind: str = "cosine"

    @classmethod
    def of(cls, raw: dict[str, Any], score_kind: str) -> Hit:
        """A hit from one pymilvus search result."""
        entity = dict(raw.get("entity") or {})
        source = str(entity.pop("source", ""))
        return cls(str(raw["id"]), float(raw["distance"]), source, entity, score_kind)


@dataclass
class AddReport:
    """What an ``add`` run did: new rows, items already stored, items that failed and why."""

    added: int = 0
    skipped: int = 0
    errors: list[ItemError] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.errors)


@dataclass(frozen=True)
class CollectionSummary:
    name: str
    rows: int
    info: CollectionInfo | None
    #: why the collection looks damaged (Milvus holds fewer rows than multiembed stored), or None
    damage: str | None = None


def list_collections(uri: str = DEFAULT_URI) -> list[CollectionSummary]:
    """Every collection at ``uri`` with its row count and, for multiembed ones, the encoder identity.

    Only reads: a Milvus Lite database that does not exist is an error, not created. A Lite
    collection holding fewer rows than multiembed last stored is listed with its ``damage``, so
    one damaged collection does not hide the others.
    """
    client = open_client(uri, create=False)
    try:
        summaries = []
        for name in sorted(client.list_collections()):
            rows = row_count(client, name)
            description = client.describe_collection(name)
            damage = check_rows(name, description, rows) if is_lite(uri) else None
            info = CollectionInfo.from_description(description)
            summaries.append(
                CollectionSummary(name, rows, info, f"{damage}; {DAMAGED_HINT}" if damage else None)
            )
        return summaries
    finally:
        close_client(client)


@dataclass(frozen=True)
class CollectionDetails:
    """Everything ``multiembed collections show`` prints about one collection."""

    name: str
    rows: int
    info: CollectionInfo | None
    #: (field name, type, parameters such as dim)
    fields: list[tuple[str, str, dict[str, Any]]]
    #: (field name, index type, metric)
    indexes: list[tuple[str, str, str]]


def _existing(client: Any, uri: str, name: str) -> None:
    if not client.has_collection(name):
        raise CollectionNotFoundError(name, uri, sorted(client.list_collections()))


def describe_collection(uri: str, name: str) -> CollectionDetails:
    """Row count, recorded encoder identity, fields and indexes of one collection (reads only)."""
    client = open_client(uri, create=False)
    try:
        _existing(client, uri, name)
        description = client.describe_collection(name)
        fields = [
            (
                str(item["name"]),
                getattr(item["type"], "name", str(item["type"])),
                dict(item.get("params") or {}),
            )
            for item in description["fields"]
        ]
        indexes = []
        for index_name in client.list_indexes(name):
            index = client.describe_index(name, index_name)
            indexes.append(
                (str(index["field_name"]), str(index["index_type"]), str(index.get("metric_type", "")))
            )
        rows = row_count(client, name)
        return CollectionDetails(name, rows, CollectionInfo.from_description(description), fields, indexes)
    finally:
        close_client(client)


def drop_collection(uri: str, name: str) -> int:
    """Delete a collection and its rows; returns how many rows it held."""
    client = open_client(uri, create=False)
    try:
        _existing(client, uri, name)
        rows = row_count(client, name)
        client.drop_collection(name)
        return rows
    finally:
        close_client(client)
