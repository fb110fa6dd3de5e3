"""The read side of :class:`MilvusStore`: query vectors, search by one output, hybrid fusion.

A query is text, a file (query by example), a raw item or a vector. It is embedded with the
collection's own encoder, in the role the encoder gives such a query (a text query to CLIP's text
tower, a path to its image tower), once for every output the collection holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiembed.errors import BackendError, ConfigError, InputError, SchemaMismatchError
from multiembed.milvus.client import read_options
from multiembed.milvus.results import Hit
from multiembed.milvus.schema import SPARSE_FIELD, TEXT_FIELD, CollectionInfo, given_vector
from multiembed.outputs import OutputSpec, sparse_row_dict

if TYPE_CHECKING:
    from multiembed.encoder import Encoder, Role
    from multiembed.milvus.client import GuardedClient

#: modalities whose models take text queries, named when a collection's model does not
TEXT_QUERY_MODALITIES = "image-text (CLIP), video with the clip model, text"


class Searching:
    """Search methods shared by every store; the store provides the client, encoder and record."""

    uri: str
    collection: str
    encoder: Encoder
    info: CollectionInfo
    client: GuardedClient | None

    @property
    def _client(self) -> GuardedClient:
        if self.client is None:
            raise BackendError(f"the store for {self.uri} is closed")
        return self.client

    def default_fields(self) -> list[str]:
        """What a hit carries by default: source, modality, model, and the text of text documents."""
        return ["source", "modality", "model", *([TEXT_FIELD] if self.info.keeps_text else [])]

    def _field(self, spec: OutputSpec) -> str:
        return self.info.fields[spec.name]

    @property
    def stored_outputs(self) -> list[OutputSpec]:
        """The encoder's outputs this collection holds (dense and sparse; multi-vector ones are not)."""
        return [spec for spec in self.encoder.outputs if spec.name in self.info.fields]

    # ---- reading --------------------------------------------------------------------------
    def _query_role(self, query: Any) -> Role:
        if isinstance(query, str) and self.encoder.accepts_text_queries:
            # For CLIP a path to an existing file is query-by-example; for text a string is text.
            return "document" if not self.encoder.documents_are_text and Path(query).is_file() else "query"
        return "document"

    def _output(self, name: str | None) -> OutputSpec:
        stored = self.stored_outputs
        if name is None:
            return stored[0]
        for spec in stored:
            if name in (spec.name, self._field(spec)):
                return spec
        choices = ", ".join(spec.name for spec in stored)
        raise ConfigError(f"collection {self.collection!r} has no output {name!r}; it has {choices}")

    def query_vectors(self, query: Any) -> dict[str, Any]:
        """The value to search each stored output with: given directly, or the encoder's for the query.

        A given vector is a 1-D array (dense) or a ``{dimension: weight}`` dict / one-row sparse matrix.
        """
        given = given_vector(query)
        if given is not None:
            kind = "sparse" if isinstance(given, dict) else "dense"
            matching = [spec for spec in self.stored_outputs if spec.kind == kind]
            if not matching:
                raise SchemaMismatchError(f"collection {self.collection!r} has no {kind} output to search")
            spec = matching[0]
            if kind == "dense" and given.shape[0] != spec.dim:
                raise SchemaMismatchError(
                    f"query vector has {given.shape[0]} dims, the {spec.name!r} output has {spec.dim}"
                )
            return {spec.name: given}
        if isinstance(query, str) and not self.encoder.accepts_text_queries and not Path(query).is_file():
            raise InputError(
                f"collection {self.collection!r} holds {self.info.modality} vectors from {self.info.model}, "
                "whose model takes no text queries; search it by example with a file, or use a collection "
                f"whose model takes text: {TEXT_QUERY_MODALITIES}"
            )
        result = self.encoder.encode([query], role=self._query_role(query), progress=False)
        if result.errors:
            raise InputError(result.errors[0].reason, "query")
        values: dict[str, Any] = {}
        for spec in self.stored_outputs:
            column = result.outputs[spec.name]
            values[spec.name] = sparse_row_dict(column, 0) if spec.kind == "sparse" else column[0]
        return values

    def query_vector(self, query: Any) -> Any:
        """The primary output's query value (see :meth:`query_vectors`)."""
        values = self.query_vectors(query)
        return values.get(self.stored_outputs[0].name, next(iter(values.values())))

    def search(
        self,
        query: Any,
        limit: int = 10,
        filter: str | None = None,
        *,
        output: str | None = None,
        hybrid: bool = False,
        weights: Sequence[float] | None = None,
        output_fields: Sequence[str] | None = None,
        rerank: Callable[..., Sequence[Any]] | None = None,
    ) -> list[Hit]:
        """Nearest items to ``query`` (text, a file path, a raw item or a vector), best first.

        ``output`` picks which of the encoder's outputs to search (default: the first). ``hybrid``
        fuses every stored output and, in a BM25 collection, Milvus' BM25 over the stored texts, by
        reciprocal rank fusion or by ``weights`` (one per searched field, in that order). Hits of
        text collections carry their text in ``fields["text"]``. ``rerank`` (a reranker from
        ``multiembed.model.reranker``) reorders those hits by reading the query with each text.
        """
        hits = self._nearest(query, limit, filter, output, hybrid, weights, output_fields)
        return hits if rerank is None else _reranked(query, hits, rerank)

    def _nearest(
        self,
        query: Any,
        limit: int,
        filter: str | None,
        output: str | None,
        hybrid: bool,
        weights: Sequence[float] | None,
        output_fields: Sequence[str] | None,
    ) -> list[Hit]:
        if not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be an integer >= 1, got {limit!r}")
        values = self.query_vectors(query)
        fields = list(output_fields) if output_fields is not None else self.default_fields()
        if hybrid:
            return self._hybrid_search(query, values, limit, filter, weights, fields)
        spec = (
            self._output(output)
            if output is not None
            else next(spec for spec in self.stored_outputs if spec.name in values)
        )
        if spec.name not in values:
            raise SchemaMismatchError(f"the query gives no {spec.name!r} vector")
        value = values[spec.name]
        if spec.kind == "sparse" and not value:
            return []  # nothing of the query is in the vocabulary: no item can score
        results = self._client.search(
            self.collection,
            data=[value],
            anns_field=self._field(spec),
            limit=limit,
            filter=filter or "",
            output_fields=fields,
            search_params={"metric_type": spec.metric},
            **read_options(self.uri),
        )
        return [Hit.of(raw, spec.metric.lower()) for raw in results[0]]

    def _hybrid_search(
        self,
        query: Any,
        values: dict[str, Any],
        limit: int,
        filter: str | None,
        weights: Sequence[float] | None,
        fields: list[str],
    ) -> list[Hit]:
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        requests = [
            AnnSearchRequest(
                data=[values[spec.name]],
                anns_field=self._field(spec),
                param={"metric_type": spec.metric},
                limit=limit,
                expr=filter or None,
            )
            for spec in self.stored_outputs
            if spec.name in values and not (spec.kind == "sparse" and not values[spec.name])
        ]
        if self.info.hybrid:
            if not isinstance(query, str):
                raise InputError("hybrid search with BM25 needs a text query", "query")
            requests.append(
                AnnSearchRequest(
                    data=[query], anns_field=SPARSE_FIELD, param={}, limit=limit, expr=filter or None
                )
            )
        if len(requests) < 2:
            raise BackendError(
                f"collection {self.collection!r} has one vector field for this query, nothing to fuse; "
                "hybrid search needs a collection built with BM25 (`multiembed index --hybrid`, "
                "hybrid=True) or an encoder with several outputs"
            )
        if weights is not None and len(weights) != len(requests):
            raise ConfigError(
                f"weights: give {len(requests)} numbers (one per searched field), got {len(weights)}"
            )
        ranker = WeightedRanker(*weights) if weights is not None else RRFRanker(60)
        results = self._client.hybrid_search(
            self.collection,
            reqs=requests,
            ranker=ranker,
            limit=limit,
            output_fields=fields,
            **read_options(self.uri),
        )
        kind = "weighted" if weights is not None else "rrf"
        return [Hit.of(raw, kind) for raw in results[0]]


def _reranked(query: Any, hits: list[Hit], rerank: Callable[..., Sequence[Any]]) -> list[Hit]:
    """The hits in the reranker's order, each scored by it (``score_kind="rerank"``)."""
    if not isinstance(query, str):
        raise InputError("reranking needs a text query", "query")
    texts = [hit.fields.get(TEXT_FIELD) for hit in hits]
    if any(not isinstance(text, str) for text in texts):
        raise BackendError("reranking needs the texts of the hits; only text collections keep them")
    results = rerank(query, texts, top_k=len(hits)) if hits else []
    return [replace(hits[result.index], score=float(result.score), score_kind="rerank") for result in results]
