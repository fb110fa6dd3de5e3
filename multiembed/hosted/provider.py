"""A hosted embedding API described once: address, key, limits, published dims and wire format.

Each provider is one small file under ``multiembed/hosted/providers/`` that subclasses
:class:`Provider` (its class attributes are the frozen description; ``payload``/``vectors``/
``error_message`` its request and response shapes) and registers itself. Everything else - keys,
batching within the provider's limits, retries, error lines - is shared here and in ``http.py``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import numpy as np

from multiembed.errors import BackendError, ConfigError
from multiembed.hosted.http import HttpClient

Role = Literal["document", "query"]


class Provider(ABC):
    """One hosted API; subclasses fill in the class attributes and the three wire-format methods."""

    #: the name used in ``--model provider:model`` (lower case)
    name: ClassVar[str] = ""
    #: how people write the provider's name, for messages
    title: ClassVar[str] = ""
    base_url: ClassVar[str] = ""
    #: environment variables that may hold the key, first set wins; () when no key is needed
    key_env: ClassVar[tuple[str, ...]] = ()
    key_required: ClassVar[bool] = True
    default_model: ClassVar[str] = ""
    #: dims the provider publishes per model (so ``dim`` needs no request)
    dims: ClassVar[Mapping[str, int]] = MappingProxyType({})
    #: most inputs one request may carry (the provider's documented limit)
    max_batch: ClassVar[int] = 96
    #: the provider's names for query/document inputs, where it distinguishes them
    input_types: ClassVar[Mapping[Role, str]] = MappingProxyType({})

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model or self.default_model
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
        ):
            raise ConfigError(f"dimensions must be a whole number >= 1, got {dimensions!r}")
        self.dimensions = dimensions
        self.url = (base_url or self.base_url).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{self.title}: base_url must start with http:// or https://, got {self.url!r}")
        #: extra request fields the caller asked for (``task``, ``truncate``...), sent as they are
        self.options = dict(options or {})
        # a self-hosted server at another address (vLLM, Ollama...) often takes no key at all
        custom_address = base_url is not None and self.url != self.base_url.rstrip("/")
        key = api_key or self._key_from_environment(required=self.key_required and not custom_address)
        self.client = HttpClient(
            provider=self.title,
            headers=self.headers(key) if key else {},
            timeout=timeout,
            max_retries=max_retries,
            message_of=self.error_message,
            status_of=self.refusal_status,
            secrets=(key,) if key else (),
        )
        self._dim = dimensions or self.dims.get(self.model)

    def _key_from_environment(self, required: bool) -> str | None:
        for variable in self.key_env:
            value = os.environ.get(variable, "").strip()
            if value:
                return value
        if required:
            where = " or ".join(self.key_env)
            raise ConfigError(
                f"{self.title} needs an API key: set {where} in the environment or pass api_key"
            )
        return None

    # ---- the wire format a provider file writes ---------------------------------------------------
    def headers(self, key: str) -> dict[str, str]:
        """How the key is sent; a bearer token unless the provider says otherwise."""
        return {"Authorization": f"Bearer {key}"}

    @abstractmethod
    def endpoint(self, role: Role) -> str:
        """The URL one batch is POSTed to."""

    @abstractmethod
    def payload(self, texts: Sequence[str], role: Role) -> dict[str, Any]:
        """The JSON body for one batch."""

    @abstractmethod
    def vectors(self, body: Any) -> list[list[float]]:
        """The vectors in a response, in input order."""

    def error_message(self, body: Any) -> str | None:
        """The provider's own explanation in an error body (``{"error": {"message": ...}}`` by default)."""
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if isinstance(body, dict) and body.get(key):
                return str(body[key])
        return None

    def refusal_status(self, status: int, body: Any) -> int:
        """What a refusal counts as: an API that answers a bad key with 400 maps it to 401 here, so
        the hosted modality stops the run instead of reporting every item as bad."""
        return status

    # ---- shared ---------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What identifies this API's vectors (never the key): recorded with collections and files."""
        return {"provider": self.name, "base_url": self.url, "dimensions": self.dimensions, **self.options}

    @property
    def dim(self) -> int:
        """The published or requested dim; otherwise one request finds it out (and is remembered)."""
        if self._dim is None:
            self._dim = len(self.embed(["dim"], "document")[0])
        return self._dim

    def embed(self, texts: Sequence[str], role: Role) -> list[np.ndarray]:
        """float32 vectors for ``texts``, in as many requests as the provider's batch limit needs."""
        vectors: list[np.ndarray] = []
        for start in range(0, len(texts), self.max_batch):
            batch = list(texts[start : start + self.max_batch])
            answer = self.client.post(self.endpoint(role), self.payload(batch, role))
            try:
                rows = self.vectors(answer)
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise BackendError(
                    f"{self.title}: unexpected answer format ({type(error).__name__}: {error})"
                ) from None
            if len(rows) != len(batch):
                raise BackendError(f"{self.title}: sent {len(batch)} texts, got {len(rows)} vectors back")
            vectors.extend(np.asarray(row, dtype=np.float32) for row in rows)
        return vectors


def openai_style_vectors(body: Any) -> list[list[float]]:
    """``{"data": [{"embedding": [...], "index": i}, ...]}``, put back in input order by ``index``."""
    data = body["data"]
    return [item["embedding"] for item in sorted(data, key=lambda item: int(item.get("index", 0)))]


_PROVIDERS: dict[str, type[Provider]] = {}
_discovered = False


def register_provider(provider: type[Provider]) -> type[Provider]:
    """Called by each file in ``multiembed/hosted/providers`` (as a class decorator)."""
    _PROVIDERS[provider.name] = provider
    return provider


def providers() -> dict[str, type[Provider]]:
    """Every known provider by name, after importing the provider files once."""
    global _discovered
    if not _discovered:
        import multiembed.hosted.providers as package

        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
        _discovered = True
    return dict(_PROVIDERS)


def get_provider(name: str) -> type[Provider]:
    """A provider class by name, with the known names in the error."""
    known = providers()
    try:
        return known[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown hosted provider {name!r}; known: {', '.join(sorted(known))}") from None
