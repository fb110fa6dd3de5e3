"""Output kinds: what an encoder emits per item, declared once so every consumer derives from it.

An encoder has one or more named outputs. Each is ``dense`` (one float32 vector of ``dim``),
``sparse`` (a vocabulary-size row, kept as ``scipy.sparse`` CSR: BM25, SPLADE, lexical weights) or
``multi`` (a matrix per item, ColBERT-style). The writers, the Milvus schema and index, the upsert
sizing and the query vectors all read these declarations instead of assuming one dense vector.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import numpy as np
import scipy.sparse as sp

from multiembed.errors import BackendError, ConfigError

VectorKind = Literal["dense", "sparse", "multi"]
KINDS: tuple[VectorKind, ...] = ("dense", "sparse", "multi")
METRICS = frozenset({"COSINE", "IP", "L2"})
#: the Milvus field type each kind is stored as; ``multi`` has none Milvus Lite can hold
MILVUS_TYPES: dict[str, str] = {"dense": "FLOAT_VECTOR", "sparse": "SPARSE_FLOAT_VECTOR"}


@dataclass(frozen=True)
class OutputSpec:
    """One named output of an encoder: its kind, its dimension and the metric it is compared with."""

    name: str
    kind: VectorKind
    dim: int
    metric: str = "COSINE"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(
                f"output {self.name!r}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}"
            )
        if self.metric not in METRICS:
            raise ConfigError(
                f"output {self.name!r}: metric must be one of {sorted(METRICS)}, not {self.metric!r}"
            )
        if self.kind == "sparse" and self.metric != "IP":
            raise ConfigError(f"output {self.name!r}: sparse outputs are compared by inner product (IP)")
        if self.dim < 1:
            raise ConfigError(f"output {self.name!r}: dim must be >= 1, got {self.dim}")

    @property
    def milvus_type(self) -> str | None:
        """The Milvus field type for this output, or None when Milvus cannot store it."""
        return MILVUS_TYPES.get(self.kind)

    def describe(self) -> dict[str, Any]:
        """JSON-able form, saved with collections and files."""
        return asdict(self)

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> OutputSpec:
        return cls(
            str(description["name"]),
            cast(VectorKind, description["kind"]),
            int(description["dim"]),
            str(description.get("metric", "COSINE")),
        )


# ---- one batch of model output -> per-item rows ---------------------------------------------------
def _is_tensor(value: Any) -> bool:
    """A torch tensor, checked without importing torch (a value can't be one unless torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _as_array(value: Any) -> np.ndarray:
    if _is_tensor(value):
        return np.asarray(value.detach().float().cpu().numpy())
    return np.asarray(value, np.float32)


def _dense_rows(spec: OutputSpec, value: Any, count: int) -> list[np.ndarray]:
    array = _as_array(value)
    if array.ndim != 2 or array.shape != (count, spec.dim):
        raise BackendError(
            f"output {spec.name!r}: the model gave shape {tuple(array.shape)}, expected ({count}, {spec.dim})"
        )
    array = array.astype(np.float32, copy=False)
    return list(array)


def _sparse_rows(spec: OutputSpec, value: Any, count: int) -> list[sp.csr_matrix]:
    if _is_tensor(value):
        dense = value if str(value.layout) == "torch.strided" else value.to_dense()  # COO or CSR tensors
        matrix = sp.csr_matrix(_as_array(dense))
    elif sp.issparse(value):
        matrix = sp.csr_matrix(value)
    else:
        matrix = sp.csr_matrix(np.asarray(value, dtype=np.float32))
    if matrix.shape != (count, spec.dim):
        raise BackendError(
            f"output {spec.name!r}: the model gave shape {matrix.shape}, expected ({count}, {spec.dim})"
        )
    matrix = matrix.astype(np.float32)
    matrix.eliminate_zeros()
    return [matrix[row : row + 1] for row in range(count)]


def _multi_rows(spec: OutputSpec, value: Any, count: int) -> list[np.ndarray]:
    rows = [_as_array(item) for item in value]
    if len(rows) != count or any(row.ndim != 2 or row.shape[1] != spec.dim for row in rows):
        shapes = [tuple(row.shape) for row in rows[:3]]
        raise BackendError(
            f"output {spec.name!r}: expected {count} matrices of shape (n, {spec.dim}), got {shapes}..."
        )
    return [row.astype(np.float32, copy=False) for row in rows]


_ROWS = {"dense": _dense_rows, "sparse": _sparse_rows, "multi": _multi_rows}

#: the reason an item fails when the model's output for it holds NaN or infinity
NON_FINITE = "the model's vector for it is not finite (NaN or infinity): the input is outside what it handles"


def is_finite_row(row: Any) -> bool:
    """False when one item's row (dense, sparse or multi-vector) holds a NaN or an infinity.

    Such a vector would be stored and then match nothing (or everything), and JSON cannot carry it.
    """
    values = row.data if sp.issparse(row) else row
    return bool(np.isfinite(values).all())


def split_rows(spec: OutputSpec, value: Any, count: int) -> list[Any]:
    """A batch's value for one output as ``count`` per-item rows, checked against the declaration."""
    return _ROWS[spec.kind](spec, value, count)


# ---- per-item rows -> one column of a result ----------------------------------------------------------
def stack_rows(spec: OutputSpec, rows: Sequence[Any]) -> Any:
    """Dense: an ``(n, dim)`` float32 matrix; sparse: an ``(n, dim)`` CSR matrix; multi: a list."""
    if spec.kind == "dense":
        return np.stack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, spec.dim), np.float32)
    if spec.kind == "sparse":
        if not rows:
            return sp.csr_matrix((0, spec.dim), dtype=np.float32)
        return sp.vstack(list(rows), format="csr", dtype=np.float32)
    return list(rows)


def concat_columns(spec: OutputSpec, columns: Sequence[Any]) -> Any:
    """Join the same output of several results (windows of one run)."""
    if spec.kind == "dense":
        parts = [column for column in columns if len(column)]
        return np.concatenate(parts) if parts else np.zeros((0, spec.dim), np.float32)
    if spec.kind == "sparse":
        parts = [column for column in columns if column.shape[0]]
        return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, spec.dim), dtype=np.float32)
    return [row for column in columns for row in column]


def row_of(spec: OutputSpec, column: Any, index: int) -> Any:
    """One item's value: a dense vector, a sparse row as ``{index: weight}``, or a matrix."""
    if spec.kind == "sparse":
        return sparse_row_dict(column, index)
    return column[index]


def sparse_row_dict(matrix: sp.csr_matrix, index: int) -> dict[int, float]:
    """A CSR row in the ``{dimension: weight}`` form pymilvus and its bulk writer accept."""
    start, end = matrix.indptr[index], matrix.indptr[index + 1]
    return {
        int(column): float(weight)
        for column, weight in zip(matrix.indices[start:end], matrix.data[start:end], strict=True)
    }


def row_bytes(spec: OutputSpec, value: Any) -> int:
    """Approximate request size of one row's value, for sizing Milvus requests."""
    if spec.kind == "dense":
        return spec.dim * 4
    if spec.kind == "sparse":
        return 12 * len(value) if isinstance(value, dict) else 12 * int(value.nnz)
    return int(np.asarray(value).nbytes)


def pymilvus_form(spec: OutputSpec, column: Any) -> Any:
    """pymilvus.model's return types: dense -> list of 1-D arrays, sparse -> ``csr_array``, multi -> list."""
    if spec.kind == "sparse":
        return sp.csr_array(column)
    return list(column)
