"""Hosted dense embedding functions with pymilvus.model's names, arguments and return types.

They run through the ``hosted`` modality (:mod:`multiembed.hosted`): no provider SDK, batching within
each provider's limits, retries on 429/5xx honouring ``Retry-After``, keys from the environment.
``base_url``, ``timeout`` and ``max_retries`` are taken by every class (a proxy, a test server).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from multiembed.encoder import Encoder, Role
from multiembed.errors import ConfigError

__all__ = [
    "CohereEmbeddingFunction",
    "GeminiEmbeddingFunction",
    "JinaEmbeddingFunction",
    "MistralAIEmbeddingFunction",
    "OpenAIEmbeddingFunction",
    "TEIEmbeddingFunction",
    "VoyageEmbeddingFunction",
]

#: keyword arguments pymilvus.model hands to a provider's SDK client that mean the same here
_CLIENT_OPTIONS = ("timeout", "max_retries", "base_url")


def _client_options(kwargs: dict[str, Any], owner: str, strict: bool = True) -> dict[str, Any]:
    """Take the client options out of ``kwargs``; with ``strict``, anything else is named in an error."""
    taken = {key: kwargs.pop(key) for key in _CLIENT_OPTIONS if key in kwargs}
    if strict and kwargs:
        raise ConfigError(f"{owner} does not take {', '.join(sorted(kwargs))}")
    return taken


class HostedEmbeddingFunction:
    """The pymilvus.model surface over a hosted encoder: lists of float32 vectors, ``dim``.

    ``call_role`` is what ``__call__`` embeds texts as (pymilvus.model embeds them as documents,
    or with the task the constructor was given). ``call_request`` are request fields ``__call__``
    sends instead (another task or input type); they get an encoder of their own.
    """

    call_role: Role = "document"

    def __init__(self, provider_model: str, *, call_request: Mapping[str, Any] | None = None, **options: Any):
        import multiembed

        self.encoder: Encoder = multiembed.load("hosted", provider_model, device="cpu", **options)
        self._call_encoder = self.encoder
        if call_request is not None:
            request_options = {**(options.get("request_options") or {}), **call_request}
            self._call_encoder = multiembed.load(
                "hosted", provider_model, device="cpu", **{**options, "request_options": request_options}
            )
            self.call_role = "document"

    def _encode(self, texts: list[str], role: Role, encoder: Encoder | None = None) -> list[np.ndarray]:
        encoder = encoder or self.encoder
        role_method = encoder.encode_queries if role == "query" else encoder.encode_documents
        vectors: list[np.ndarray] = role_method(list(texts))
        return vectors

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode_queries(self, queries: list[str]) -> list[np.ndarray]:
        return self._encode(queries, "query")

    def encode_documents(self, documents: list[str]) -> list[np.ndarray]:
        return self._encode(documents, "document")

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        return self._encode(texts, self.call_role, self._call_encoder)


class OpenAIEmbeddingFunction(HostedEmbeddingFunction):
    """pymilvus.model's ``OpenAIEmbeddingFunction``; ``base_url`` reaches any OpenAI-compatible server.

    Extra keyword arguments that pymilvus.model hands to the OpenAI client (``timeout``,
    ``max_retries``) are taken; others are sent with each request (e.g. ``user``).
    """

    def __init__(
        self,
        model_name: str = "text-embedding-ada-002",
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.model_name = model_name
        client_options = {key: kwargs.pop(key) for key in ("timeout", "max_retries") if key in kwargs}
        super().__init__(
            f"openai:{model_name}",
            api_key=api_key,
            base_url=base_url,
            dimensions=dimensions,
            request_options=kwargs or None,
            **client_options,
        )


class VoyageEmbeddingFunction(HostedEmbeddingFunction):
    """pymilvus.model's ``VoyageEmbeddingFunction``: ``input_type`` query/document, and none for
    ``__call__``; ``dimension`` is checked against the model's sizes. Float vectors only."""

    def __init__(
        self,
        model_name: str = "voyage-3-large",
        api_key: str | None = None,
        embedding_type: str | None = None,
        truncate: bool | None = None,
        dimension: int | None = None,
        **kwargs: Any,
    ) -> None:
        if embedding_type in ("int8", "uint8"):
            raise ConfigError("Currently int8 or uint8 is not supported with PyMilvus model library.")
        if embedding_type not in (None, "float"):
            raise ConfigError(f"embedding_type {embedding_type!r} is not supported here; use 'float'")
        self.model_name, self.truncate, self.embedding_type, self.dimension = (
            model_name,
            truncate,
            embedding_type,
            dimension,
        )
        request = {"truncation": truncate} if truncate is not None else None
        super().__init__(
            f"voyage:{model_name}",
            call_request={"input_type": None},
            api_key=api_key,
            dimensions=dimension,
            request_options=request,
            **_client_options(kwargs, "VoyageEmbeddingFunction"),
        )


class JinaEmbeddingFunction(HostedEmbeddingFunction):
    """pymilvus.model's ``JinaEmbeddingFunction``: tasks retrieval.query/retrieval.passage, and
    ``task`` for ``__call__``. Other keyword arguments are sent as request fields."""

    def __init__(
        self,
        model_name: str = "jina-embeddings-v3",
        api_key: str | None = None,
        task: str = "retrieval.passage",
        dimensions: int | None = None,
        late_chunking: bool | None = False,
        **kwargs: Any,
    ) -> None:
        self.model_name, self.task, self.late_chunking = model_name, task, late_chunking
        client = _client_options(kwargs, "JinaEmbeddingFunction", strict=False)
        super().__init__(
            f"jina:{model_name}",
            call_request=None if task == "retrieval.passage" else {"task": task},
            api_key=api_key,
            dimensions=dimensions,
            request_options={"late_chunking": late_chunking, **kwargs},
            **client,
        )


class CohereEmbeddingFunction(HostedEmbeddingFunction):
    """pymilvus.model's ``CohereEmbeddingFunction`` over Cohere's v2 Embed API: search_query and
    search_document, and ``input_type`` for ``__call__``. Float vectors only."""

    def __init__(
        self,
        model_name: str = "embed-english-light-v3.0",
        api_key: str | None = None,
        input_type: str = "search_document",
        embedding_types: list[str] | None = None,
        truncate: str | None = None,
        **kwargs: Any,
    ) -> None:
        if embedding_types is not None:
            if len(embedding_types) > 1:
                raise ConfigError(
                    "Only one embedding type can be specified using current PyMilvus model library."
                )
            if embedding_types[0] in ("int8", "uint8"):
                raise ConfigError("Currently int8 or uint8 is not supported with PyMilvus model library.")
            if embedding_types[0] != "float":
                raise ConfigError(
                    f"embedding_types {embedding_types!r} are not supported here; use ['float']"
                )
        self.model_name, self.input_type, self.embedding_types, self.truncate = (
            model_name,
            input_type,
            embedding_types,
            truncate,
        )
        super().__init__(
            f"cohere:{model_name}",
            call_request=None if input_type == "search_document" else {"input_type": input_type},
            api_key=api_key,
            request_options={"truncate": truncate} if truncate is not None else None,
            **_client_options(kwargs, "CohereEmbeddingFunction"),
        )


class MistralAIEmbeddingFunction(HostedEmbeddingFunction):
    """pymilvus.model's ``MistralAIEmbeddingFunction`` (queries and documents alike). The key may be
    left out: ``MISTRAL_API_KEY`` or ``MISTRALAI_API_KEY`` is read. Other keyword arguments are
    request fields, as pymilvus.model sends them (``output_dimension`` sets the dim)."""

    def __init__(self, api_key: str | None = None, model_name: str = "mistral-embed", **kwargs: Any) -> None:
        self.model_name = model_name
        client = _client_options(kwargs, "MistralAIEmbeddingFunction", strict=False)
        dimensions = kwargs.pop("output_dimension", None)
        super().__init__(
            f"mistral:{model_name}",
            api_key=api_key,
            dimensions=dimensions,
            request_options=kwargs or None,
            **client,
        )


def _config_value(config: Any, *names: str) -> Any:
    """A field of a google-genai ``EmbedContentConfig``, or of a plain dict with either spelling."""
    for name in names:
        value = config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)
        if value is not None:
            return getattr(value, "value", value)  # an enum member -> its name
    return None


class GeminiEmbeddingFunction(HostedEmbeddingFunction):
    """pymilvus.model's ``GeminiEmbeddingFunction``: RETRIEVAL_QUERY and RETRIEVAL_DOCUMENT tasks.

    ``config`` (google-genai's ``EmbedContentConfig`` or a dict) gives ``output_dimensionality``,
    ``title``, and the ``task_type`` that ``__call__`` uses (pymilvus.model uses it for every
    method; here queries and documents keep their retrieval tasks).
    """

    def __init__(
        self,
        model_name: str = "gemini-embedding-exp-03-07",
        api_key: str | None = None,
        config: Any = None,
        **kwargs: Any,
    ) -> None:
        self.model_name, self.config = model_name, config
        dimensions = _config_value(config, "output_dimensionality", "outputDimensionality")
        task_type = _config_value(config, "task_type", "taskType")
        title = _config_value(config, "title")
        super().__init__(
            f"gemini:{model_name}",
            call_request=None if task_type is None else {"taskType": str(task_type)},
            api_key=api_key,
            dimensions=dimensions,
            request_options={"title": title} if title is not None else None,
            **_client_options(kwargs, "GeminiEmbeddingFunction"),
        )


class TEIEmbeddingFunction(HostedEmbeddingFunction):
    """pymilvus.model's ``TEIEmbeddingFunction`` for a text-embeddings-inference server at ``api_url``.

    ``dimensions`` names the server's dim (not sent); without it the dim costs one request. A server
    started with ``--api-key`` takes ``api_key=`` or ``TEI_API_KEY``.
    """

    def __init__(self, api_url: str, dimensions: int | None = None, **kwargs: Any) -> None:
        self.api_url = api_url
        api_key = kwargs.pop("api_key", None)
        client = _client_options(kwargs, "TEIEmbeddingFunction")
        client.pop("base_url", None)
        super().__init__("tei", api_key=api_key, base_url=api_url, dimensions=dimensions, **client)
