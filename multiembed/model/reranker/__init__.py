"""Rerankers, as in ``pymilvus.model.reranker``: results ``RerankResult(text, score, index)``, best first.

A reranker reads each (query, document) pair together, so it orders a short list of hits better
than vector similarity does; ``MilvusStore.search(..., rerank=...)`` applies one to its hits.
"""

from multiembed.model.exports import lazy_exports

_WHERE = {
    "RerankResult": "result",
    "CrossEncoderRerankFunction": "cross_encoder",
    "BGERerankFunction": "bge",
    "CohereRerankFunction": "hosted",
    "VoyageRerankFunction": "hosted",
    "JinaRerankFunction": "hosted",
    "TEIRerankFunction": "hosted",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
