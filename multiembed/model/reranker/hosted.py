"""pymilvus.model's hosted rerankers (Cohere, Voyage AI, Jina AI, text-embeddings-inference) over HTTP.

Same class names, constructor arguments and defaults as pymilvus.model 0.3.4, and ``__call__(query,
documents, top_k=5)`` returning :class:`RerankResult` s best first, ``index`` being the position in
``documents``. No provider SDK is needed: requests go through multiembed's own HTTP client (retries
honouring ``Retry-After``, one-line errors that never show the key, long lists split within each
provider's per-request limit). Beyond pymilvus' arguments each takes ``base_url`` (a proxy or test
server), ``timeout``, ``max_retries`` and ``max_documents`` (documents per request).
"""

from __future__ import annotations

from typing import Any

from multiembed.errors import ConfigError
from multiembed.hosted.rerank import TEI, Cohere, HostedReranker, Jina, Voyage

__all__ = ["CohereRerankFunction", "JinaRerankFunction", "TEIRerankFunction", "VoyageRerankFunction"]


class CohereRerankFunction(HostedReranker):
    """pymilvus.model's ``CohereRerankFunction``: Cohere's v2 rerank API; key from CO_API_KEY/COHERE_API_KEY.

    ``**kwargs`` are extra request fields, as pymilvus passes them to ``rerank`` (``max_tokens_per_doc``).
    ``return_documents`` is kept for compatibility: results always carry the caller's own text.
    """

    def __init__(
        self,
        model_name: str = "rerank-english-v3.0",
        api_key: str | None = None,
        return_documents: bool = True,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_documents: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.model_name = model_name
        self.return_documents = return_documents
        super().__init__(
            Cohere(),
            model_name,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_documents=max_documents,
            options=kwargs,
        )


class VoyageRerankFunction(HostedReranker):
    """pymilvus.model's ``VoyageRerankFunction``: Voyage AI's rerank API; key from VOYAGE_API_KEY."""

    def __init__(
        self,
        model_name: str = "rerank-2",
        api_key: str | None = None,
        *,
        truncation: bool = True,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_documents: int | None = None,
    ) -> None:
        self.model_name = model_name
        super().__init__(
            Voyage(),
            model_name,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_documents=max_documents,
            options={"truncation": bool(truncation)},
        )


class JinaRerankFunction(HostedReranker):
    """pymilvus.model's ``JinaRerankFunction``: Jina AI's rerank API; key from JINAAI_API_KEY/JINA_API_KEY."""

    def __init__(
        self,
        model_name: str = "jina-reranker-v2-base-multilingual",
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_documents: int | None = None,
    ) -> None:
        self.model_name = model_name
        super().__init__(
            Jina(),
            model_name,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_documents=max_documents,
        )


class TEIRerankFunction(HostedReranker):
    """pymilvus.model's ``TEIRerankFunction``: a text-embeddings-inference server at ``api_url``.

    No key by default; ``api_key`` is sent as a bearer token to servers started with ``--api-key``.
    ``raw_scores=True`` asks for the model's logits instead of sigmoid scores. ``max_documents``
    should match the server's ``--max-client-batch-size`` (32 unless it was started otherwise).
    """

    def __init__(
        self,
        api_url: str | None = None,
        *,
        api_key: str | None = None,
        raw_scores: bool = False,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_documents: int | None = None,
    ) -> None:
        address = base_url or api_url
        if not address:
            raise ConfigError(
                "TEIRerankFunction needs api_url, the address of a text-embeddings-inference server"
            )
        self.api_url = address.rstrip("/") + TEI.path
        super().__init__(
            TEI(),
            api_key=api_key,
            base_url=address,
            timeout=timeout,
            max_retries=max_retries,
            max_documents=max_documents,
            options={"raw_scores": bool(raw_scores)},
        )
