"""Hosted rerankers described once: address, key, per-request limit and wire format; one shared client.

A :class:`RerankProvider` subclass is the frozen description of one API (its docstring records the
documented request and answer shapes and where they were read); :class:`HostedReranker` does the
rest for all of them through :class:`~multiembed.hosted.http.HttpClient` (timeouts, retries on 429
and 5xx honouring ``Retry-After``, one-line errors without the key). A document list longer than the
provider's per-request limit is sent in several requests and the scores merged: each document is
scored against the query on its own (a cross-encoder reads one pair at a time), so the scores of one
query are comparable across requests.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from multiembed.errors import BackendError, ConfigError, InputError
from multiembed.hosted.http import HttpClient
from multiembed.model.reranker.result import RerankResult

Scores = list[tuple[int, float]]


class RerankProvider(ABC):
    """One hosted rerank API: class attributes describe it, three methods speak its wire format."""

    name: ClassVar[str] = ""
    #: how people write the provider's name, for messages
    title: ClassVar[str] = ""
    base_url: ClassVar[str] = ""
    #: appended to the base URL: the endpoint one request is POSTed to
    path: ClassVar[str] = "/rerank"
    #: environment variables that may hold the key, first set wins; () when no key is needed
    key_env: ClassVar[tuple[str, ...]] = ()
    key_required: ClassVar[bool] = True
    #: most documents one request may carry (the provider's documented limit)
    max_documents: ClassVar[int] = 1000

    def headers(self, key: str) -> dict[str, str]:
        """How the key is sent; a bearer token unless the provider says otherwise."""
        return {"Authorization": f"Bearer {key}"}

    @abstractmethod
    def payload(
        self, model: str, query: str, documents: list[str], top_n: int | None, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The JSON body for one request; ``top_n`` None asks for every document's score."""

    @abstractmethod
    def scores(self, body: Any) -> Scores:
        """``[(index in this request's documents, score)]`` from an answer, in any order."""

    def error_message(self, body: Any) -> str | None:
        """The provider's own explanation in an error body: ``message``, ``detail`` or ``error``."""
        if not isinstance(body, dict):
            return None
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value
            if value:
                return str(value)
        return None


def key_from_environment(provider: RerankProvider, required: bool) -> str | None:
    """The first non-empty variable of ``provider.key_env``; a ConfigError naming them if required."""
    for variable in provider.key_env:
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    if required:
        where = " or ".join(provider.key_env)
        raise ConfigError(
            f"{provider.title} needs an API key: set {where} in the environment or pass api_key"
        )
    return None


class HostedReranker:
    """``reranker(query, documents, top_k)``: :class:`RerankResult` s best first, ``index`` = position.

    ``base_url`` points it at another address (a proxy, a test server); there the key is optional.
    ``max_documents`` lowers or raises the per-request limit (a self-hosted server's own setting).
    ``options`` are extra request fields sent as they are (``max_tokens_per_doc``, ``truncate``...).
    """

    def __init__(
        self,
        provider: RerankProvider,
        model: str = "",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_documents: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        url = (base_url or provider.base_url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{provider.title}: base_url must start with http:// or https://, got {url!r}")
        self.url = url + provider.path
        limit = provider.max_documents if max_documents is None else max_documents
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"max_documents must be a whole number >= 1, got {max_documents!r}")
        self.max_documents = limit
        self.options = dict(options or {})
        custom_address = base_url is not None and url != provider.base_url.rstrip("/")
        key = api_key or key_from_environment(provider, provider.key_required and not custom_address)
        self.client = HttpClient(
            provider=provider.title,
            headers=provider.headers(key) if key else {},
            timeout=timeout,
            max_retries=max_retries,
            message_of=provider.error_message,
            secrets=(key,) if key else (),
        )

    def __call__(self, query: str, documents: Sequence[str], top_k: int | None = 5) -> list[RerankResult]:
        """The ``top_k`` documents that best answer ``query`` (all of them when ``top_k`` is 0 or None)."""
        if not isinstance(query, str) or not query.strip():
            raise InputError("reranking needs a non-empty text query", "query")
        texts = list(documents)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"document {position} is {type(text).__name__}, not text", "documents")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
            raise ConfigError(f"top_k must be a whole number >= 0 (0: all), got {top_k!r}")
        if not texts:
            return []
        wanted = min(top_k or len(texts), len(texts))
        scored: Scores = []
        for start in range(0, len(texts), self.max_documents):
            scored.extend(self._scores(query, texts[start : start + self.max_documents], start, wanted))
        # best first; equal scores keep the caller's order
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        return [RerankResult(texts[index], score, index) for index, score in scored[:wanted]]

    def _scores(self, query: str, chunk: list[str], start: int, wanted: int) -> Scores:
        """One request's scores, indexed in the caller's list; only the best ``wanted`` are asked for."""
        top_n = wanted if wanted < len(chunk) else None
        body = self.provider.payload(self.model, query, chunk, top_n, self.options)
        answer = self.client.post(self.url, body)
        title = self.provider.title
        try:
            pairs = [(int(index), float(score)) for index, score in self.provider.scores(answer)]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            raise BackendError(
                f"{title}: unexpected answer format ({type(error).__name__}: {error})"
            ) from None
        indices = [index for index, _ in pairs]
        if any(not 0 <= index < len(chunk) for index in indices) or len(set(indices)) != len(indices):
            raise BackendError(f"{title}: the answer's indices {indices} do not match {len(chunk)} documents")
        expected = top_n or len(chunk)
        if len(pairs) < expected:
            raise BackendError(f"{title}: asked for {expected} scores, got {len(pairs)}")
        return [(start + index, score) for index, score in pairs]


# ---- the providers --------------------------------------------------------------------------------
class Cohere(RerankProvider):
    """Cohere Rerank v2: ``POST https://api.cohere.com/v2/rerank`` with a bearer key.

    Request ``{"model", "query", "documents": [str], "top_n"?, "max_tokens_per_doc"?}``; answer
    ``{"id", "results": [{"index", "relevance_score"}], "meta"}``, best first; errors
    ``{"message": ...}``. Cohere recommends at most 1,000 documents per request (hard limit 10,000
    chunks). Sources: https://docs.cohere.com/reference/rerank (Rerank V2 API),
    https://docs.cohere.com/v2/docs/reranking-best-practices, https://docs.cohere.com/reference/errors.
    """

    name, title, base_url = "cohere", "Cohere", "https://api.cohere.com/v2"
    key_env = ("CO_API_KEY", "COHERE_API_KEY")
    max_documents = 1000

    def payload(
        self, model: str, query: str, documents: list[str], top_n: int | None, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "query": query, "documents": documents}
        if top_n is not None:
            body["top_n"] = top_n
        return {**body, **options}

    def scores(self, body: Any) -> Scores:
        return [(item["index"], item["relevance_score"]) for item in body["results"]]


class Voyage(RerankProvider):
    """Voyage AI rerankers: ``POST https://api.voyageai.com/v1/rerank`` with a bearer key.

    Request ``{"query", "documents": [str], "model", "top_k"?, "return_documents"?, "truncation"}``
    (truncation defaults to true); answer ``{"object": "list", "data": [{"index", "relevance_score"}],
    "model", "usage": {"total_tokens"}}``; errors ``{"detail": ...}``. At most 1,000 documents per
    request (and token limits per model). Sources: https://docs.voyageai.com/reference/reranker-api,
    https://docs.voyageai.com/docs/error-codes.
    """

    name, title, base_url = "voyage", "Voyage AI", "https://api.voyageai.com/v1"
    key_env = ("VOYAGE_API_KEY",)
    max_documents = 1000

    def payload(
        self, model: str, query: str, documents: list[str], top_n: int | None, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"query": query, "documents": documents, "model": model}
        if top_n is not None:
            body["top_k"] = top_n
        return {**body, "truncation": True, **options}

    def scores(self, body: Any) -> Scores:
        return [(item["index"], item["relevance_score"]) for item in body["data"]]


class Jina(RerankProvider):
    """Jina AI Reranker: ``POST https://api.jina.ai/v1/rerank`` with a bearer key.

    Request ``{"model", "query", "documents": [str], "top_n"?, "return_documents"?}``; answer
    ``{"model", "usage": {"total_tokens"}, "results": [{"index", "relevance_score", "document":
    {"text"}}]}``, best first; errors ``{"detail": ...}`` (as pymilvus.model reads them). Sources:
    https://jina.ai/reranker (API example) and pymilvus.model 0.3.4's ``jinaai.py``. Jina publishes no
    per-request document count; 1,000 (Cohere's and Voyage's figure) keeps requests reasonable.
    """

    name, title, base_url = "jina", "Jina AI", "https://api.jina.ai/v1"
    key_env = ("JINAAI_API_KEY", "JINA_API_KEY")
    max_documents = 1000

    def payload(
        self, model: str, query: str, documents: list[str], top_n: int | None, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "query": query, "documents": documents}
        if top_n is not None:
            body["top_n"] = top_n
        return {**body, **options}

    def scores(self, body: Any) -> Scores:
        return [(item["index"], item["relevance_score"]) for item in body["results"]]


class TEI(RerankProvider):
    """Hugging Face text-embeddings-inference serving a reranker: ``POST {api_url}/rerank``, no key.

    Request ``{"query", "texts": [str], "raw_scores"?, "return_text"?, "truncate"?}``; answer
    ``[{"index", "score", "text"?}]``; errors ``{"error", "error_type"}`` (413 above the batch limit).
    A server takes at most ``--max-client-batch-size`` texts per request, 32 by default. Sources:
    TEI's OpenAPI (docs/openapi.json: RerankRequest, Rank) and docs/source/en/cli_arguments.md.
    """

    name, title, base_url = "tei", "text-embeddings-inference", ""
    key_required = False
    max_documents = 32

    def payload(
        self, model: str, query: str, documents: list[str], top_n: int | None, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {"query": query, "texts": documents, **options}

    def scores(self, body: Any) -> Scores:
        return [(item["index"], item["score"]) for item in body]
