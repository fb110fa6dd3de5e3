"""The sparse result type of the drop-in functions: a ``csr_array`` whose rows are ``(1, dim)``.

pymilvus.model returns ``scipy.sparse.csr_array``; its documentation iterates it and gets one
``(1, dim)`` row per text (``list(docs_embeddings)[0].shape == (1, 21)``), which is what older SciPy
gave and what ``MilvusClient.insert`` takes as a sparse vector. SciPy >= 1.13 iterates a 2-D
``csr_array`` as 1-D rows instead. :class:`SparseRows` is a ``csr_array`` (every other behaviour is
SciPy's) that keeps the documented ``(1, dim)`` rows on iteration.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import scipy.sparse as sp


class SparseRows(sp.csr_array):  # type: ignore[misc]
    """A ``csr_array`` iterated as ``(1, dim)`` ``csr_array`` rows."""

    def __iter__(self) -> Iterator[sp.csr_array]:
        for row in range(self.shape[0]):
            yield sp.csr_array(self[row : row + 1])


def sparse_rows(matrix: Any) -> SparseRows:
    """``matrix`` (any 2-D scipy sparse matrix or array) as :class:`SparseRows`, without copying."""
    return SparseRows(matrix)
