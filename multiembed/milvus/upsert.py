"""Rows cut into upsert requests Milvus accepts: one place for :class:`MilvusStore` and the Ray sink.

Milvus refuses a request over 64 MB (its gRPC message limit) with the whole request, so rows are
sent in requests of at most :data:`MAX_REQUEST_BYTES`, half that, sized from the vectors and texts
they carry. Both writers size rows the same way, so a collection filled by one is never refused by
the other for the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from multiembed.milvus.schema import TEXT_FIELD
from multiembed.outputs import OutputSpec, row_bytes

MAX_REQUEST_BYTES = 32 * 1024 * 1024
#: per-row bytes besides the vectors and text (keys, source, modality, model, framing)
ROW_OVERHEAD = 512

#: a collection's vector fields: (field name, the output it holds)
Fields = Sequence[tuple[str, OutputSpec]]


def row_size(row: dict[str, Any], fields: Fields) -> int:
    """An upper estimate of a row's bytes in a request (text counted at 4 bytes a character)."""
    size = ROW_OVERHEAD + 4 * len(row.get(TEXT_FIELD, "")) + len(row["source"])
    return size + sum(row_bytes(spec, row[name]) for name, spec in fields)


def requests(
    rows: Iterable[dict[str, Any]], fields: Fields, max_rows: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in order, cut into requests of at most ~32 MB and ``max_rows`` rows (None: no cap)."""
    request: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        bytes_ = row_size(row, fields)
        full = size + bytes_ > MAX_REQUEST_BYTES or (max_rows is not None and len(request) >= max_rows)
        if request and full:
            yield request
            request, size = [], 0
        request.append(row)
        size += bytes_
    if request:
        yield request
