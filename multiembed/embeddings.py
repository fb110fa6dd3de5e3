"""The result of an encode run: vectors for the items that worked, reasons for those that did not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multiembed.outputs import OutputSpec, concat_columns, row_of


@dataclass(frozen=True)
class ItemError:
    """An item that could not be embedded, named so a user can find and fix it."""

    index: int
    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def field_name(spec: OutputSpec, primary: bool) -> str:
    """Column / Milvus field of an output: ``vector`` for the first, ``<name>_vector`` for the others."""
    return "vector" if primary else f"{spec.name}_vector"


@dataclass
class Embeddings:
    """Every output of a run, in input order, with content ids, sources and failures.

    ``outputs[name]`` is an ``(n, dim)`` float32 matrix (dense), an ``(n, dim)`` scipy CSR matrix
    (sparse) or a list of ``(tokens, dim)`` matrices (multi), one row per item that worked;
    ``vectors`` is the first (primary) output. ``indices[i]`` is the position in the input stream of
    row ``i``; failed positions appear only in ``errors``, so nothing is silently dropped.
    """

    outputs: dict[str, Any]
    specs: tuple[OutputSpec, ...]
    ids: list[str]
    sources: list[str]
    indices: list[int]
    errors: list[ItemError] = field(default_factory=list)
    #: sources of items left out because their key was already stored (or repeated in the input)
    skipped: list[str] = field(default_factory=list)
    #: the decoded items behind the rows (only when asked for, e.g. texts for BM25 fields)
    raws: list[Any] = field(default_factory=list)
    modality: str = ""
    model: str = ""
    #: the encoder identity (``Encoder.config()``): how these vectors were made
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def dense(
        cls,
        vectors: np.ndarray,
        ids: list[str],
        sources: list[str],
        indices: list[int],
        *,
        metric: str = "COSINE",
        **rest: Any,
    ) -> Embeddings:
        """A result with one dense output, e.g. vectors made elsewhere that should be written or stored."""
        matrix = np.asarray(vectors, dtype=np.float32)
        spec = OutputSpec("dense", "dense", int(matrix.shape[1]), metric)
        return cls({spec.name: matrix}, (spec,), ids, sources, indices, **rest)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def primary(self) -> OutputSpec:
        return self.specs[0]

    @property
    def vectors(self) -> Any:
        """The primary output: ``(n, dim)`` float32 for dense encoders (the usual case)."""
        return self.outputs[self.primary.name]

    def __getitem__(self, name: str) -> Any:
        """One output by name, e.g. ``result["sparse"]``."""
        return self.outputs[name]

    @property
    def dim(self) -> int:
        return self.primary.dim

    @property
    def metric(self) -> str:
        return self.primary.metric

    @property
    def total(self) -> int:
        """Items seen: embedded, failed or skipped."""
        return len(self.ids) + len(self.errors) + len(self.skipped)

    def fields(self) -> list[tuple[str, OutputSpec]]:
        """(column name, output) for every output, the primary first."""
        return [(field_name(spec, index == 0), spec) for index, spec in enumerate(self.specs)]

    def row(self, index: int, *, kinds: Sequence[str] = ("dense", "sparse", "multi")) -> dict[str, Any]:
        """One item as a flat row: id, vector columns (sparse as ``{dim: weight}``), source, modality..."""
        row: dict[str, Any] = {"id": self.ids[index]}
        for name, spec in self.fields():
            if spec.kind in kinds:
                row[name] = row_of(spec, self.outputs[spec.name], index)
        row.update(source=self.sources[index], modality=self.modality, model=self.model)
        return row

    def without(self, rows: Sequence[int], reason: str) -> Embeddings:
        """The same result with ``rows`` moved to ``errors`` (e.g. rows a store cannot hold)."""
        if not rows:
            return self
        dropped = set(rows)
        keep = [row for row in range(len(self)) if row not in dropped]
        outputs = {
            spec.name: [self.outputs[spec.name][row] for row in keep]
            if spec.kind == "multi"
            else self.outputs[spec.name][keep]
            for spec in self.specs
        }
        errors = self.errors + [
            ItemError(self.indices[row], self.sources[row], reason) for row in sorted(dropped)
        ]
        return Embeddings(
            outputs=outputs,
            specs=self.specs,
            ids=[self.ids[row] for row in keep],
            sources=[self.sources[row] for row in keep],
            indices=[self.indices[row] for row in keep],
            errors=sorted(errors, key=lambda error: error.index),
            skipped=self.skipped,
            raws=[self.raws[row] for row in keep] if self.raws else [],
            modality=self.modality,
            model=self.model,
            config=self.config,
        )

    def to_milvus_rows(self) -> list[dict[str, Any]]:
        """Rows for ``MilvusClient.insert/upsert`` with the schema from ``schema_for`` (multi left out)."""
        return [self.row(index, kinds=("dense", "sparse")) for index in range(len(self))]

    @classmethod
    def concat(
        cls, parts: Sequence[Embeddings], *, specs: tuple[OutputSpec, ...], **identity: Any
    ) -> Embeddings:
        """Join the windows of one run back into one result."""
        return cls(
            outputs={
                spec.name: concat_columns(spec, [part.outputs[spec.name] for part in parts]) for spec in specs
            },
            specs=specs,
            ids=[item for part in parts for item in part.ids],
            sources=[item for part in parts for item in part.sources],
            indices=[item for part in parts for item in part.indices],
            errors=[item for part in parts for item in part.errors],
            skipped=[item for part in parts for item in part.skipped],
            raws=[item for part in parts for item in part.raws],
            **identity,
        )
