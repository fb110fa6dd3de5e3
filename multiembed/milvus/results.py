"""What the store hands back: search hits, add reports and the list of collections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from multiembed.embeddings import ItemError
from multiembed.milvus.client import DEFAULT_URI, close_client, open_client
from multiembed.milvus.schema import CollectionInfo


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


def list_collections(uri: str = DEFAULT_URI) -> list[CollectionSummary]:
    """Every collection at ``uri`` with its row count and, for multiembed ones, the encoder identity."""
    client = open_client(uri)
    try:
        return [
            CollectionSummary(
                name,
                int(client.get_collection_stats(name)["row_count"]),
                CollectionInfo.from_description(client.describe_collection(name)),
            )
            for name in sorted(client.list_collections())
        ]
    finally:
        close_client(client)
