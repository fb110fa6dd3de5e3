"""Hybrid embedding functions, as in ``pymilvus.model.hybrid``: several vector kinds from one forward.

``BGEM3EmbeddingFunction`` returns ``{"dense", "sparse", "colbert_vecs"}``; ``MGTEEmbeddingFunction``
``{"dense", "sparse"}``.
"""

from multiembed.model.exports import lazy_exports

_WHERE = {
    "BGEM3EmbeddingFunction": "bge_m3",
    "MGTEEmbeddingFunction": "mgte",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
