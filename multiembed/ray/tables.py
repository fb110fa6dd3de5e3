"""The rows a Ray job passes on: one per item, in the layout of multiembed's parquet files, plus ``error``.

A row holds ``id`` (the content key), ``source``, ``modality``, ``model`` and one column per encoder
output (``vector`` for the first, ``<name>_vector`` for the others: dense as ``list<float32>``,
sparse as the JSON ``{"dimension": weight}`` text, multi-vector as ``list<list<float32>>``), then
``text`` for text documents (what Milvus keeps for search results and BM25) and ``error``. An item
that failed keeps its row, with the reason in ``error`` and null id and vectors, so nothing is
dropped silently. So does an item left out because its collection already holds it (a re-run):
its id, null vectors, and true in :data:`STORED_COLUMN`, so the sink counts it as skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from multiembed.embeddings import Embeddings, ItemError, field_name
from multiembed.output import to_arrow
from multiembed.outputs import OutputSpec, stack_rows

ERROR_COLUMN = "error"
TEXT_COLUMN = "text"
#: true for an item not embedded because the collection already holds its key (only in jobs that
#: were given the stored keys); the sink counts these rows as skipped and writes none of them
STORED_COLUMN = "_multiembed_stored"


class Stored(NamedTuple):
    """An item of a batch whose key the collection already holds: where it was, its name and key."""

    position: int
    source: str
    key: str


def to_table(
    part: Embeddings, *, keep_text: bool = False, stored: Sequence[Stored] | None = None
) -> pa.Table:
    """One encoded batch as rows, failures (and ``stored`` items, when given) included, in the order
    its items came in."""
    good = to_arrow(part)
    rest: list[tuple[int, str, str | None]] = [(error.index, error.source, None) for error in part.errors]
    rest += [(item.position, item.source, item.key) for item in stored or ()]
    filled = {
        "id": [key for _, _, key in rest],
        "source": [source for _, source, _ in rest],
        "modality": [part.modality] * len(rest),
        "model": [part.model] * len(rest),
    }
    others = pa.Table.from_arrays(
        [
            pa.array(filled[column.name], column.type)
            if column.name in filled
            else pa.nulls(len(rest), column.type)
            for column in good.schema
        ],
        schema=good.schema,
    )
    table = pa.concat_tables([good, others])
    if keep_text:
        texts = [str(raw) for raw in part.raws] + [None] * len(rest)
        table = table.append_column(TEXT_COLUMN, pa.array(texts, pa.string()))
    reasons: list[str | None] = [None] * (len(part) + len(rest))
    reasons[len(part) : len(part) + len(part.errors)] = [error.reason for error in part.errors]
    table = table.append_column(ERROR_COLUMN, pa.array(reasons, pa.string()))
    if stored is not None:
        flags = [False] * (len(part) + len(part.errors)) + [True] * len(stored)
        table = table.append_column(STORED_COLUMN, pa.array(flags, pa.bool_()))
    positions = np.asarray(part.indices + [index for index, _, _ in rest], dtype=np.int64)
    return table.take(pa.array(np.argsort(positions, kind="stable")))


def dense_matrix(spec: OutputSpec, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A ``list<float32>`` column without nulls as an ``(n, dim)`` float32 matrix."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = array.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(len(array), spec.dim)


def sparse_dicts(column: pa.ChunkedArray | pa.Array) -> list[dict[int, float]]:
    """A column of JSON ``{"dimension": weight}`` texts as the dicts pymilvus takes."""
    return [
        {int(index): float(weight) for index, weight in json.loads(text).items()}
        for text in column.to_pylist()
    ]


def _sparse_matrix(spec: OutputSpec, column: pa.ChunkedArray) -> sp.csr_matrix:
    rows = []
    for row in sparse_dicts(column):
        indices = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
        weights = np.fromiter(row.values(), dtype=np.float32, count=len(row))
        rows.append(sp.csr_matrix((weights, (np.zeros(len(row), np.int64), indices)), shape=(1, spec.dim)))
    return stack_rows(spec, rows)


def output_column(spec: OutputSpec, column: pa.ChunkedArray) -> Any:
    """One output column (no nulls) in the form :class:`Embeddings` holds it."""
    if spec.kind == "dense":
        return dense_matrix(spec, column)
    if spec.kind == "sparse":
        return _sparse_matrix(spec, column)
    return [np.asarray(matrix, dtype=np.float32).reshape(-1, spec.dim) for matrix in column.to_pylist()]


def to_embeddings(
    table: pa.Table, specs: Sequence[OutputSpec], identity: dict[str, Any], start: int = 0
) -> Embeddings:
    """Rows back as :class:`Embeddings` (for the file writers); ``start`` is the first row's position."""
    reasons = table.column(ERROR_COLUMN).to_pylist()
    sources = table.column("source").to_pylist()
    ok = [row for row, reason in enumerate(reasons) if reason is None]
    good = table.take(pa.array(ok, pa.int64()))
    return Embeddings(
        outputs={
            spec.name: output_column(spec, good.column(field_name(spec, index == 0)))
            for index, spec in enumerate(specs)
        },
        specs=tuple(specs),
        ids=good.column("id").to_pylist(),
        sources=[sources[row] for row in ok],
        indices=[start + row for row in ok],
        errors=[
            ItemError(start + row, sources[row], reason)
            for row, reason in enumerate(reasons)
            if reason is not None
        ],
        **identity,
    )
