"""Dense embedding functions, as in ``pymilvus.model.dense``: same names, arguments and return types.

Local models run through multiembed's encoders (no run-time downloads); hosted APIs through one
HTTP client with batching, retries and keys from the environment.
"""

from multiembed.model.exports import lazy_exports

_WHERE = {
    "DefaultEmbeddingFunction": "sentence_transformer",
    "SentenceTransformerEmbeddingFunction": "sentence_transformer",
    "Model2VecEmbeddingFunction": "model2vec",
    "InstructorEmbeddingFunction": "instructor",
    "NomicEmbeddingFunction": "nomic",
    "OpenAIEmbeddingFunction": "hosted",
    "VoyageEmbeddingFunction": "hosted",
    "JinaEmbeddingFunction": "hosted",
    "CohereEmbeddingFunction": "hosted",
    "MistralAIEmbeddingFunction": "hosted",
    "GeminiEmbeddingFunction": "hosted",
    "TEIEmbeddingFunction": "hosted",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
