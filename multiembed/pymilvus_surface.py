"""The calls pymilvus.model's embedding functions answer, on top of :meth:`Encoder.encode`.

Code written for pymilvus.model calls ``encode_documents`` / ``encode_queries`` (or the function
itself) and expects a list of vectors, a CSR array or a dict of both, and an exception for a bad
input; multiembed's own ``encode`` reports bad items instead. Kept apart from the Encoder, whose
job is the pipeline, not one library's calling convention.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from multiembed.errors import InputError
from multiembed.outputs import pymilvus_form

if TYPE_CHECKING:
    from multiembed.embeddings import Embeddings
    from multiembed.outputs import OutputSpec


class _Encodes(Protocol):
    @property
    def outputs(self) -> tuple[OutputSpec, ...]: ...

    def encode(
        self, inputs: Iterable[Any], *, role: Literal["document", "query"] = ..., progress: bool | None = ...
    ) -> Embeddings: ...

    def encode_documents(self, documents: Iterable[Any]) -> Any: ...


class PymilvusSurface:
    """``encode_documents``, ``encode_queries`` and ``__call__``, as pymilvus.model has them."""

    def _encode_strict(self: _Encodes, inputs: Iterable[Any], role: Literal["document", "query"]) -> Any:
        result = self.encode(list(inputs), role=role, progress=False)
        if result.errors:
            first = result.errors[0]
            raise InputError(first.reason, first.source)
        surfaced = {spec.name: pymilvus_form(spec, result.outputs[spec.name]) for spec in self.outputs}
        return surfaced[self.outputs[0].name] if len(self.outputs) == 1 else surfaced

    def encode_documents(self: _Encodes, documents: Iterable[Any]) -> Any:
        """As pymilvus.model does: a list of vectors (dense), a CSR array (sparse), a dict (several outputs).

        Raises InputError naming the first bad item.
        """
        return PymilvusSurface._encode_strict(self, documents, "document")

    def encode_queries(self: _Encodes, queries: Iterable[Any]) -> Any:
        """Like ``encode_documents``, with the model's query instruction/tower, if it has one."""
        return PymilvusSurface._encode_strict(self, queries, "query")

    def __call__(self: _Encodes, inputs: Iterable[Any]) -> Any:
        return self.encode_documents(inputs)  # a subclass's own, if it has one
