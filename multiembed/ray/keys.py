"""The keys a collection already holds, handed to every embedding actor so a re-run embeds only what
is missing (as in-process ``index`` does), not everything again to be skipped at the sink.

The keys are read once, on the driver, before the job: a Milvus Lite database can be open in one
process only (the sink's write task holds it during the job), so the actors cannot ask it
themselves. They travel through Ray's object store as one sorted array of byte strings: the actors
of a node share it without a copy each, at 64 bytes a key (a Python set of the same keys costs over
100 bytes a key in every actor), and look keys up by binary search.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from multiembed.batching import windows
from multiembed.milvus.client import GuardedClient, read_options

#: ids read per request while listing a collection's keys
KEYS_PER_READ = 10_000


class StoredKeys:
    """A set of content keys, as one sorted ``bytes`` array (picklable, shared by Ray without copies)."""

    def __init__(self, keys: Iterable[str]) -> None:
        # in chunks: a list of all the keys as Python objects would hold ~100 bytes a key at once
        chunks = [np.array([key.encode() for key in chunk], np.bytes_) for chunk in windows(keys, 65536)]
        self._keys = np.unique(np.concatenate(chunks)) if chunks else np.array([], np.bytes_)

    def __len__(self) -> int:
        return len(self._keys)

    def known(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` in the set."""
        if not len(self._keys) or not keys:
            return set()
        width = self._keys.dtype.itemsize  # a longer key is in no slot (and would be cut to fit one)
        candidates = [key for key in keys if len(key.encode()) <= width]
        probe = np.array([key.encode() for key in candidates], dtype=self._keys.dtype)
        slots = np.minimum(np.searchsorted(self._keys, probe), len(self._keys) - 1)
        return {key for key, found in zip(candidates, self._keys[slots] == probe, strict=True) if found}


def read_keys(client: GuardedClient, collection: str) -> Iterator[str]:
    """Every id in the collection, page by page (a query returns at most 16,384 rows)."""
    pages = client.query_iterator(
        collection, batch_size=KEYS_PER_READ, filter="", output_fields=["id"], **read_options(client.uri)
    )
    next_page = GuardedClient._guard(pages.next)  # the pages' failures read as the client's do
    try:
        while page := next_page():
            yield from (str(row["id"]) for row in page)
    finally:
        pages.close()
